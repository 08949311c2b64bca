"""Gallery service: enrolled people and their exemplar vectors; search, enrollment, versions.
``python -m services.gallery``.

Each gallery is ``galleries/<name>`` in the artifact store, served at its CURRENT version and switched when a
new one is published (:class:`iznet.serving.Current`). A search names the model its vectors came from; it is
answered by the newest loaded version built with that model (normally the current one; during a model switch
the previous one), and refused with FAILED_PRECONDITION when there is none, so vectors of one model are never
searched among vectors of another. Every search must name that model (``model_digest``); a threshold must be
finite and in [0, 1] (0: the calibrated one). Errors name the gallery asked for, never the store's path on this
server. A thin layer over :class:`iznet.gallery.Gallery` and
:class:`iznet.gallery.GalleryStore`: edits load the current version, change it and save a new version.
"""

from __future__ import annotations

import math
import threading
import time

import click
import numpy as np

from iznet.config import load_settings
from iznet.errors import NotFoundError, UserInputError
from iznet.gallery import GalleryStore
from iznet.imageio import ImageError, decode_image
from iznet.serving import Current
from iznet.sizes import EMBEDDING_DIM
from iznet.store import ArtifactStore
from iznet.v1 import common_pb2, gallery_pb2, gallery_pb2_grpc
from iznet.wire import match_pb
from services import common

MAX_TOP_K = 100


def vectors_from_pb(vectors) -> np.ndarray:
    lengths = {len(v.values) for v in vectors}
    if lengths != {EMBEDDING_DIM}:
        raise UserInputError(f"vectors must have {EMBEDDING_DIM} values each (got {sorted(lengths)})")
    arr = np.array([list(v.values) for v in vectors], np.float32)
    if not np.all(np.isfinite(arr)):
        raise UserInputError("vectors must be finite (no NaN or infinity)")
    return arr


def check_threshold(value: float) -> float:
    """A similarity threshold override: finite and in [0, 1]; 0 means the gallery's calibrated one."""
    if not math.isfinite(value) or not 0 <= value <= 1:
        raise UserInputError(f"threshold {value} out of range: a similarity in (0, 1], or 0 for the gallery's "
                             "calibrated threshold")
    return value


class GalleryServicer(gallery_pb2_grpc.GalleryServicer):
    def __init__(self, store: ArtifactStore, default: str, poll_s: float):
        self.store, self.default, self.poll_s = store, default, poll_s
        self.gstore = GalleryStore(store)
        self._galleries: dict[str, Current] = {}
        self._lock = threading.Lock()
        self._write_locks: dict[str, threading.Lock] = {}

    def _current(self, name: str) -> Current:
        name = name or self.default
        with self._lock:
            cur = self._galleries.get(name)
        if cur is None:
            try:
                self.gstore.current_version(name)
            except NotFoundError:  # name the gallery asked for, not this server's paths or its other galleries
                raise NotFoundError(f"no gallery {name!r} on this server") from None
            cur = Current(self.store, "galleries", name, lambda p: self.gstore.load(name, int(p.name)),
                          poll_s=self.poll_s)
            with self._lock:
                cur = self._galleries.setdefault(name, cur.start())
                self._write_locks.setdefault(name, threading.Lock())
        return cur

    def Search(self, request: gallery_pb2.SearchRequest, context) -> gallery_pb2.SearchResponse:
        if not request.vectors:
            raise UserInputError("empty request: no vectors")
        if not 0 <= request.top_k <= MAX_TOP_K:
            raise UserInputError(f"top_k {request.top_k} out of range 0..{MAX_TOP_K}")
        if not request.model_digest:  # without it vectors of one model could be searched among another's
            raise UserInputError("model_digest is required: the digest of the model the vectors came from "
                                 "(EmbedResponse.model.digest)")
        threshold = check_threshold(request.threshold)
        vectors = vectors_from_pb(request.vectors)
        cur = self._current(request.gallery)
        gallery = cur.get().obj
        # The newest loaded version made with that model (see the module docstring); none: search() refuses.
        found = cur.find(lambda g: g.model.get("digest") == request.model_digest)
        gallery = found.obj if found is not None else gallery
        common.observe_batch("gallery", "Search", len(request.vectors))
        t0 = time.perf_counter()
        model = {"digest": request.model_digest, "name": "the caller's model"}
        matches = gallery.search(vectors, model=model, threshold=threshold, candidates=request.top_k or 3)
        ms = (time.perf_counter() - t0) * 1e3
        out = [match_pb(m) for m in matches]
        return gallery_pb2.SearchResponse(matches=out, version=common.gallery_version_pb(gallery.version_info()),
                                          timings=common.timings_pb({"search": ms}))

    def _edit(self, name: str, action: str, change):
        """Load the current version afresh (the served copy is never mutated), apply ``change(gallery)``,
        save it as a new version and serve it; returns (gallery, change's result)."""
        name = name or self.default
        cur = self._current(name)
        with self._write_locks[name]:
            gallery = self.gstore.load(name)
            result = change(gallery)
            version = self.gstore.save(gallery, action=action)
            cur.set(version, gallery)
        return gallery, result

    @staticmethod
    def _person_pb(gallery, name: str) -> gallery_pb2.Person:
        p = gallery.person(name)
        return gallery_pb2.Person(id=p.id, name=p.name, exemplars=len(gallery.exemplars_of(p.id)))

    def Enroll(self, request: gallery_pb2.EnrollRequest, context) -> gallery_pb2.EnrollResponse:
        if not request.exemplars:
            raise UserInputError("empty request: no exemplars")
        if not request.person:
            raise UserInputError("empty request: no person")
        if not request.model_digest:
            raise UserInputError("model_digest is required: the digest of the model the vectors came from")
        common.observe_batch("gallery", "Enroll", len(request.exemplars))
        vectors = vectors_from_pb([e.vector for e in request.exemplars])
        crops = []
        for i, e in enumerate(request.exemplars):
            try:
                crops.append(decode_image(e.crop) if e.crop else None)
            except ImageError as exc:
                raise ImageError(f"exemplar {i}: {exc}") from None
        model = {"digest": request.model_digest, "name": "the caller's model"}
        gallery, _ = self._edit(request.gallery, "enroll", lambda g: g.add_exemplars(
            request.person, vectors, crops, [e.source for e in request.exemplars], model=model))
        return gallery_pb2.EnrollResponse(person=self._person_pb(gallery, request.person), added=len(vectors),
                                          version=common.gallery_version_pb(gallery.version_info()))

    def RenamePerson(self, request, context) -> gallery_pb2.Person:
        if not request.person or not request.new_name:
            raise UserInputError("empty request: give the person and the new name")
        gallery, _ = self._edit(request.gallery, "rename", lambda g: g.rename(request.person, request.new_name))
        return self._person_pb(gallery, request.new_name)

    def RemovePerson(self, request, context) -> gallery_pb2.RemovePersonResponse:
        if not request.person:
            raise UserInputError("empty request: no person")
        gallery, removed = self._edit(request.gallery, "remove", lambda g: g.remove(request.person))
        return gallery_pb2.RemovePersonResponse(removed_exemplars=removed,
                                                version=common.gallery_version_pb(gallery.version_info()))

    def ListPeople(self, request, context) -> gallery_pb2.ListPeopleResponse:
        gallery = self._current(request.gallery).get().obj
        people = [gallery_pb2.Person(id=p.id, name=p.name, exemplars=len(gallery.exemplars_of(p.id)))
                  for p in gallery.people.values()]
        return gallery_pb2.ListPeopleResponse(people=people, version=common.gallery_version_pb(gallery.version_info()))

    def GetVersion(self, request, context) -> common_pb2.GalleryVersion:
        return common.gallery_version_pb(self._current(request.gallery).get().obj.version_info())

    def stop(self) -> None:
        for cur in self._galleries.values():
            cur.stop()


@click.command()
@click.option("--store", type=click.Path(file_okay=False), default=None,
              help="Artifact store (default: $IZNET_STORE or ~/.iznet).")
@click.option("--gallery", "default_gallery", default="default", show_default=True,
              help="Gallery answered when a request names none.")
@click.option("--poll", default=1.0, show_default=True, type=float,
              help="Seconds between checks for a newly published version (0: never switch).")
@common.common_click_options
def main(store, default_gallery, poll, host, port, metrics_port, max_message_mb, workers, grace, torch_threads):
    """The gallery gRPC service."""
    common.limit_threads(torch_threads)
    settings = load_settings(store=store)
    servicer = GalleryServicer(ArtifactStore(settings.store), default_gallery, poll)
    servicer._current(default_gallery)  # a missing default gallery is a start-up error, not a per-call one
    common.serve("gallery", [gallery_pb2.DESCRIPTOR.services_by_name["Gallery"].full_name],
                 lambda s: gallery_pb2_grpc.add_GalleryServicer_to_server(servicer, s),
                 common.ServerOptions(host, port, metrics_port, max_message_mb, workers, grace), on_stop=servicer.stop)
