"""Embedding service: aligned face crops in, L2-normalised vectors out. ``python -m services.embedding``.

``--model NAME``: when the artifact store has ``models/NAME`` (see :func:`iznet.serving.publish_model`), its
CURRENT version is served and a newly published version is switched to without dropping calls
(:class:`iznet.serving.Current`); the previous version stays loaded, so a call pinned to its digest
(``model_digest``) during a switch is still answered by it. Otherwise NAME is an embedder spec for
:func:`iznet.gallery.embedders.make_embedder` (``baseline-lbp``, a trained model's folder), served as is.
A thin layer over the embedder's ``embed``.
"""

from __future__ import annotations

import time

import click

from iznet.config import load_settings
from iznet.errors import ImageError, PreconditionError, UserInputError
from iznet.imageio import decode_image
from iznet.gallery.embedders import make_embedder
from iznet.serving import Current, Fixed, load_model_version
from iznet.store import ArtifactStore
from iznet.v1 import common_pb2, embedding_pb2, embedding_pb2_grpc
from services import common


class EmbeddingServicer(embedding_pb2_grpc.EmbeddingServicer):
    def __init__(self, current: Current | Fixed, max_bytes: int):
        self.current, self.max_bytes = current, max_bytes

    def _model(self, digest: str):
        if not digest:
            return self.current.get().obj
        found = self.current.find(lambda e: e.version["digest"] == digest)
        if found is None:
            served = self.current.get().obj.version
            raise PreconditionError(f"model {digest} is not served here (serving {served['name']} "
                                    f"v{served['version']}, {served['digest']})")
        return found.obj

    def Embed(self, request: embedding_pb2.EmbedRequest, context) -> embedding_pb2.EmbedResponse:
        if not request.crops:
            raise UserInputError("empty request: no crops")
        embedder = self._model(request.model_digest)  # one model for the whole call
        common.observe_batch("embedding", "Embed", len(request.crops))
        t0 = time.perf_counter()
        crops = []
        for i, c in enumerate(request.crops):
            try:
                crops.append(decode_image(c.data, max_pixels=4096 * 4096, max_bytes=self.max_bytes))
            except ImageError as exc:
                raise ImageError(f"crop {i} ({c.id or 'no id'}): {exc}") from None
        common.check_deadline(context, "decoding crops")
        t1 = time.perf_counter()
        vectors = embedder.embed(crops)
        t2 = time.perf_counter()
        return embedding_pb2.EmbedResponse(
            vectors=[common_pb2.Vector(values=v.tolist()) for v in vectors],
            model=common.model_version_pb(embedder.version),
            timings=common.timings_pb({"decode": (t1 - t0) * 1e3, "embed": (t2 - t1) * 1e3}))

    def GetModel(self, request, context) -> common_pb2.ModelVersion:
        return common.model_version_pb(self.current.get().obj.version)


@click.command()
@click.option("--store", type=click.Path(file_okay=False), default=None,
              help="Artifact store (default: $IZNET_STORE or ~/.iznet).")
@click.option("--model", "model_name", default="baseline-lbp", show_default=True,
              help="models/<NAME> in the store (its CURRENT version, switched when a new one is published), or "
                   "an embedder: baseline-lbp, baseline-pixels, a trained model's folder.")
@click.option("--poll", default=1.0, show_default=True, type=float,
              help="Seconds between checks for a newly published version (0: never switch).")
@common.common_click_options
def main(store, model_name, poll, host, port, metrics_port, max_message_mb, workers, grace, torch_threads):
    """The embedding gRPC service."""
    common.limit_threads(torch_threads)
    settings = load_settings(store=store)
    artifacts = ArtifactStore(settings.store)
    if model_name in artifacts.names("models"):
        current = Current(artifacts, "models", model_name, load_model_version, poll_s=poll).start()
    else:
        current = Fixed(make_embedder(model_name))
    servicer = EmbeddingServicer(current, min(settings.max_image_bytes, max_message_mb * common.MiB))
    common.serve("embedding", [embedding_pb2.DESCRIPTOR.services_by_name["Embedding"].full_name],
                 lambda s: embedding_pb2_grpc.add_EmbeddingServicer_to_server(servicer, s),
                 common.ServerOptions(host, port, metrics_port, max_message_mb, workers, grace), on_stop=current.stop)
