"""Embedding service: aligned face crops in, L2-normalised vectors out. ``python -m services.embedding``.

``--model NAME``: when the artifact store has ``models/NAME`` (see :func:`iznet.serving.publish_model`), its
CURRENT version is served and a newly published version is switched to without dropping calls
(:class:`iznet.serving.Current`); the previous version stays loaded, so a call pinned to its digest
(``model_digest``) during a switch is still answered by it. Otherwise NAME is any embedder the registry
knows (:func:`iznet.registry.create_embedder`: ``default``, ``dlib-resnet``, ``baseline-lbp``, a trained
model's folder), served as is. Every answer's model version says the face chip the model wants.
A thin layer over the embedder's ``embed``.

``--backend`` (``IZNET_EMBED_BACKEND``) picks where vectors are computed (:mod:`iznet.embedding.backends`):
``torch`` in this process (the default, as above); ``onnx`` with onnxruntime in this process on an export
(``--model NAME`` = ``triton/NAME`` in the store, switched when ``iznet export`` publishes a new version, or a
``model.onnx`` path); ``triton``, a remote Triton Inference Server (``--triton-url``, ``--triton-model``;
Triton switches versions itself and each answer names the version that computed it). A Triton that is down
or has not loaded the model makes calls fail with ``UNAVAILABLE`` and Triton's reason.
"""

from __future__ import annotations

import time

import click

from services.options import triton_options
from iznet.config import load_settings
from iznet.embedding.backends import BACKENDS
from iznet.embedding.backends import make_backend
from iznet.errors import ImageError, PreconditionError, UnavailableError, UserInputError
from iznet import wire
from iznet.registry import create_embedder
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
                crops.append(wire.image_from_pb(c, max_pixels=4096 * 4096, max_bytes=self.max_bytes))
            except ImageError as exc:
                raise ImageError(f"crop {i} ({c.id or 'no id'}): {exc}") from None
        common.check_deadline(context, "decoding crops")
        t1 = time.perf_counter()
        vectors = embedder.embed(crops)
        t2 = time.perf_counter()
        return embedding_pb2.EmbedResponse(
            vectors=[common_pb2.Vector(values=v.tolist()) for v in vectors],
            model=common.model_version_pb(_served(embedder)),
            timings=common.timings_pb({"decode": (t1 - t0) * 1e3, "embed": (t2 - t1) * 1e3}))

    def GetModel(self, request, context) -> common_pb2.ModelVersion:
        return common.model_version_pb(_served(self.current.get().obj))


def _served(embedder) -> dict:
    """The model's version with the face chip it wants (the gateway asks detection for that crop)."""
    return {**embedder.version, "chip": str(getattr(embedder, "chip", ""))}


@click.command()
@click.option("--store", type=click.Path(file_okay=False), default=None,
              help="Artifact store (default: $IZNET_STORE or ~/.iznet).")
@click.option("--model", "model_name", default="default", show_default=True,
              help="models/<NAME> in the store (its CURRENT version, switched when a new one is published), or "
                   "any embedder `iznet models list` shows: default (dlib-resnet), baseline-lbp, a trained "
                   "model's folder.")
@click.option("--poll", default=1.0, show_default=True, type=float,
              help="Seconds between checks for a newly published version (0: never switch).")
@click.option("--backend", type=click.Choice(["auto", *BACKENDS]), default="auto", show_default=True,
              envvar=["IZNET_EMBEDDING_BACKEND", "IZNET_EMBED_BACKEND"],
              help="Where vectors are computed: auto (in-process, the faster engine the model has: onnxruntime "
                   "for dlib-resnet, torch for a trained folder), torch, onnx (onnxruntime in-process on an "
                   "export: --model NAME of triton/NAME in the store, or a model.onnx) or triton (remote, "
                   "--triton-url).")
@triton_options
@click.option("--triton-wait", default=60.0, show_default=True, type=float,
              help="Seconds to wait at start for Triton to serve the model (it may start after this service).")
@common.common_click_options
def main(store, model_name, poll, backend, triton_url, triton_model, triton_version, triton_timeout, triton_wait,
         host, port, metrics_port, max_message_mb, workers, grace, torch_threads):
    """The embedding gRPC service."""
    common.limit_threads(torch_threads)
    settings = load_settings(store=store)
    artifacts = ArtifactStore(settings.store)
    if backend == "triton":
        current = Fixed(_wait_for_triton(triton_wait, triton_url=triton_url, triton_model=triton_model,
                                         triton_version=triton_version, triton_timeout=triton_timeout))
    elif backend == "onnx":
        if model_name in artifacts.names("triton"):
            current = Current(artifacts, "triton", model_name,
                              lambda path: make_backend("onnx", path, threads=torch_threads), poll_s=poll).start()
        else:
            current = Fixed(create_embedder(model_name, "onnx", threads=torch_threads or None, store=settings.store))
    elif model_name in artifacts.names("models"):
        current = Current(artifacts, "models", model_name, load_model_version, poll_s=poll).start()
    else:
        current = Fixed(create_embedder(model_name, backend, threads=torch_threads or None))
    servicer = EmbeddingServicer(current, min(settings.max_image_bytes, max_message_mb * common.MiB))
    common.serve("embedding", [embedding_pb2.DESCRIPTOR.services_by_name["Embedding"].full_name],
                 lambda s: embedding_pb2_grpc.add_EmbeddingServicer_to_server(servicer, s),
                 common.ServerOptions(host, port, metrics_port, max_message_mb, workers, grace), on_stop=current.stop)


def _wait_for_triton(wait_s: float, **kw):
    """The triton backend, once Triton serves the model (retrying for ``wait_s``; then its reason)."""
    deadline = time.monotonic() + max(0.0, wait_s)
    while True:
        try:
            return make_backend("triton", **kw)
        except UnavailableError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(1.0)
