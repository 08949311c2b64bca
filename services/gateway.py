"""The gateway: a Ray Serve application with a gRPC ingress answering ``iznet.v1.Gateway``.
``python -m services.gateway --detection HOST:PORT --embedding HOST:PORT --gallery HOST:PORT``.

``Label`` does what :meth:`iznet.pipeline.Pipeline.label` does, with the pipeline's stages behind the
services: ``locate`` (the detection service, cutting the chip the embedding model wants) -> ``identify`` (the
embedding service, then the gallery service's search) -> the core's own ``assemble`` (small faces, unknowns,
notes, reading order, versions) -> draw (``iznet.drawing.annotate``). So an answer through the gateway is the
in-process answer, field for field. ``LabelMany`` streams one answer per photo. The logic is
:class:`GatewayCore`, a plain class; :func:`build_app` deploys it on Ray Serve. Calls to the services carry deadlines and are retried on UNAVAILABLE with
backoff; the embedding calls of concurrent requests are merged into one batch (``@serve.batch``).

Consistency: the vectors' model digest goes with the search, so the gallery answers from a version built with
that model (or refuses). If the gallery has no version for the model just used (a new model published before
its re-embedded gallery), the gateway re-embeds pinned to the gallery's model, which the embedding service
still holds; each answer names the one (detector, embedder, gallery) set that produced it.

Errors keep their gRPC code: a corrupt image is INVALID_ARGUMENT, a missing gallery NOT_FOUND, a model the
gallery cannot take FAILED_PRECONDITION, a service that stays down UNAVAILABLE, each with the reason.
Optional API keys: callers send ``x-api-key`` metadata, others get UNAUTHENTICATED.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field

import click
import grpc

from iznet.v1 import common_pb2, detection_pb2, detection_pb2_grpc, embedding_pb2, embedding_pb2_grpc
from iznet.ports import free_port
from iznet.sizes import CROP_SIZE
from iznet.v1 import gallery_pb2, gallery_pb2_grpc, gateway_pb2
from services.common import public_details, service_metadata
from services.drain import Drainable

SERVICER_FUNCTION = "iznet.v1.gateway_pb2_grpc.add_GatewayServicer_to_server"
API_KEY_HEADER = "x-api-key"


@dataclass
class GatewayConfig:
    detection: str
    embedding: str
    gallery: str
    default_gallery: str = ""
    crop_size: int = CROP_SIZE  # as the Pipeline aligns
    #: Whole-request budget and per-call deadline, seconds.
    timeout_s: float = 30.0
    call_timeout_s: float = 10.0
    #: Attempts per service call when it answers UNAVAILABLE (with exponential backoff from 50 ms).
    attempts: int = 4
    max_batch: int = 16
    #: 0: a lone request is embedded at once; requests that arrive while a batch is being embedded are
    #: merged into the next one (so batches form under load without delaying anyone when idle).
    batch_wait_ms: float = 0.0
    max_message_mb: int = 32
    api_keys: list[str] = field(default_factory=list)
    jpeg_quality: int = 90


class GatewayError(Exception):
    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(details)
        self.code, self.details = code, details

    def __reduce__(self):  # crosses Ray's process boundary: pickle by its arguments
        return (GatewayError, (self.code, self.details))


def _channel_options(max_message_mb: int):
    from services.common import channel_options

    return channel_options(max_message_mb)


class GatewayCore(Drainable):
    """What the gateway does, without Ray: move a photo through the services and answer with the core's own
    :func:`iznet.pipeline.assemble`. :func:`build_app` deploys it on Ray Serve (adding cross-request batching of
    the embedding calls); tests drive it directly against real services."""

    def __init__(self, cfg: dict | GatewayConfig):
        import cv2

        cv2.setNumThreads(1)
        self.cfg = cfg if isinstance(cfg, GatewayConfig) else GatewayConfig(**cfg)
        opts = _channel_options(self.cfg.max_message_mb)
        self.channels = {name: grpc.aio.insecure_channel(getattr(self.cfg, name), options=opts)
                         for name in ("detection", "embedding", "gallery")}
        self.detection = detection_pb2_grpc.DetectionStub(self.channels["detection"])
        self.embedding = embedding_pb2_grpc.EmbeddingStub(self.channels["embedding"])
        self.gallery = gallery_pb2_grpc.GalleryStub(self.channels["gallery"])
        #: The stack's service token (and any key the services want), sent on every call to them.
        self._metadata = service_metadata()
        #: The face chip the embedding model wants (its ModelVersion.chip), asked once, then followed from
        #: every embedding answer (a model switch may change it).
        self._chip = ""

    # --------------------------------------------------------------------------------- calls to services
    async def _call(self, stage: str, method, request, deadline: float):
        """One call with a deadline; UNAVAILABLE is retried with backoff while time and attempts remain."""
        delay = 0.05
        for attempt in range(1, self.cfg.attempts + 1):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise GatewayError(grpc.StatusCode.DEADLINE_EXCEEDED, f"{stage}: out of time")
            try:
                return await method(request, timeout=min(remaining, self.cfg.call_timeout_s),
                                    metadata=self._metadata)
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE or attempt == self.cfg.attempts:
                    # No internal addresses or paths leave the gateway.
                    raise GatewayError(exc.code(), f"{stage}: {public_details(exc.details())}") from None
            await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay *= 2

    async def _embed_many(self, items: list[tuple[list[bytes], float]]):
        """Embed the crops of several requests in one call; each gets its own slice back (or the error)."""
        from iznet import wire

        flat = [wire.crop_image_pb(c) for crops, _ in items for c in crops]
        deadline = min(d for _, d in items)
        try:
            resp = await self._call("embedding", self.embedding.Embed, embedding_pb2.EmbedRequest(crops=flat),
                                    deadline)
        except GatewayError as exc:
            return [exc] * len(items)  # each caller raises it
        out, i = [], 0
        for crops, _ in items:
            out.append((list(resp.vectors[i:i + len(crops)]), resp.model, len(flat)))
            i += len(crops)
        return out

    async def _embed_batched(self, item: tuple[list[bytes], float]):
        """One request's crops; the Ray deployment replaces this with a batch across concurrent requests."""
        return (await self._embed_many([item]))[0]

    async def _embed(self, crops: list, deadline: float, model_digest: str = ""):
        from iznet import wire

        if model_digest:  # pinned (a model switch in progress): a call of its own
            resp = await self._call("embedding", self.embedding.Embed,
                                    embedding_pb2.EmbedRequest(crops=[wire.crop_image_pb(c) for c in crops],
                                                               model_digest=model_digest), deadline)
            return list(resp.vectors), resp.model, len(crops)
        result = await self._embed_batched((crops, deadline))
        if isinstance(result, GatewayError):
            raise result
        return result

    async def _search(self, vectors, model, gallery: str, threshold: float | None, deadline):
        return await self._call("gallery", self.gallery.Search, gallery_pb2.SearchRequest(
            gallery=gallery, vectors=vectors, model_digest=model.digest, threshold=threshold or 0.0), deadline)

    async def _chip_for(self, deadline: float) -> str:
        if not self._chip:
            served = await self._call("embedding", self.embedding.GetModel, common_pb2.GetModelRequest(), deadline)
            self._chip = served.chip or f"box:{self.cfg.crop_size}:0.2"
        return self._chip

    # ---------------------------------------------------------------------------------------- labelling
    async def _label(self, image: common_pb2.Image, opts: gateway_pb2.LabelOptions) -> gateway_pb2.LabelResponse:
        """:meth:`iznet.pipeline.Pipeline.label` with its stages behind the services: ``locate`` (detection),
        ``identify`` (embedding + gallery), then the same ``assemble``."""
        from iznet import wire
        from iznet.errors import UserInputError
        from iznet.pipeline import assemble, usable_faces

        try:
            options = wire.options_from_pb(opts)
        except UserInputError as exc:
            raise GatewayError(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
        gallery_name = opts.gallery or self.cfg.default_gallery
        t: dict[str, float] = {}
        start = time.perf_counter()
        deadline = time.monotonic() + self.cfg.timeout_s
        # Crops come back raw and go to the embedding service as they are; encoded only for a caller who
        # asked to see them.
        det = await self._call("detection", self.detection.Detect, detection_pb2.DetectRequest(
            images=[image], min_score=options.min_score, chip=await self._chip_for(deadline),
            raw_crops=not options.return_crops), deadline)
        result = det.results[0]
        if result.error:
            raise GatewayError(grpc.StatusCode.INVALID_ARGUMENT, f"image {image.id!r}: {result.error}"
                               if image.id else result.error)
        t1 = time.perf_counter()
        t["detect"] = (t1 - start) * 1e3
        for k, v in det.timings.ms.items():
            t[f"detection.{k}"] = v
        located = [wire.located_from_pb(f) for f in result.faces]
        usable = usable_faces(located, options.min_face)
        matches, batch = {}, 0
        if usable:
            crops = [located[i].crop for i in usable]
            vectors, model, batch = await self._embed(crops, deadline)
            if model.chip and model.chip != self._chip:
                self._chip = model.chip  # the model switched: later photos are cut to its chip
            t2 = time.perf_counter()
            t["embed"] = (t2 - t1) * 1e3
            try:
                found = await self._search(vectors, model, gallery_name, options.threshold, deadline)
            except GatewayError as exc:
                if exc.code != grpc.StatusCode.FAILED_PRECONDITION:
                    raise
                # A new model before its gallery: embed again with the model the gallery was built with.
                version = await self._call("gallery", self.gallery.GetVersion, gallery_pb2.GetVersionRequest(
                    gallery=gallery_name), deadline)
                if not version.model.digest or version.model.digest == model.digest:
                    raise
                vectors, model, _ = await self._embed(crops, deadline, version.model.digest)
                found = await self._search(vectors, model, gallery_name, options.threshold, deadline)
            t["search"] = (time.perf_counter() - t2) * 1e3
            matches = {i: wire.match_from_pb(m.identity, m.candidates) for i, m in zip(usable, found.matches)}
            embedder, gallery = wire.model_version_from_pb(model), wire.gallery_version_from_pb(found.version)
        else:  # nothing to look up: still name the versions (and the threshold) that would have answered
            served, version = await asyncio.gather(
                self._call("embedding", self.embedding.GetModel, common_pb2.GetModelRequest(), deadline),
                self._call("gallery", self.gallery.GetVersion, gallery_pb2.GetVersionRequest(gallery=gallery_name),
                           deadline))
            embedder, gallery = wire.model_version_from_pb(served), wire.gallery_version_from_pb(version)
        res = assemble(image.id, result.width, result.height, located, matches, options,
                       detector=wire.model_version_from_pb(det.model), embedder=embedder, gallery=gallery,
                       padded=result.padded)
        res.embedding_batch = batch
        annotated = b""
        if opts.annotate:
            t4 = time.perf_counter()
            annotated = annotated_jpeg(image.data, res.faces, self.cfg.jpeg_quality)
            t["draw"] = (time.perf_counter() - t4) * 1e3
        t["total"] = (time.perf_counter() - start) * 1e3
        res.timings = t
        return wire.label_result_pb(res, annotated)

    def _authorise(self, grpc_context) -> None:
        if not self.cfg.api_keys:
            return
        metadata = dict(grpc_context.invocation_metadata()) if grpc_context is not None else {}
        sent = str(metadata.get(API_KEY_HEADER) or "")
        if not any(hmac.compare_digest(sent, key) for key in self.cfg.api_keys):  # constant time
            raise GatewayError(grpc.StatusCode.UNAUTHENTICATED,
                               f"missing or wrong API key (send it as '{API_KEY_HEADER}' metadata)")

    @staticmethod
    def _fail(grpc_context, exc: GatewayError):
        if grpc_context is not None:
            grpc_context.set_code(exc.code)
            grpc_context.set_details(exc.details)
        raise exc

    async def Label(self, request: gateway_pb2.LabelRequest, grpc_context=None) -> gateway_pb2.LabelResponse:
        async with self.in_flight(grpc_context):  # counted for the drain, refused once it began
            try:
                self._authorise(grpc_context)
                if not request.image.data:
                    raise GatewayError(grpc.StatusCode.INVALID_ARGUMENT, "empty request: no image")
                return await self._label(request.image, request.options)
            except GatewayError as exc:
                self._fail(grpc_context, exc)

    async def LabelMany(self, request: gateway_pb2.LabelManyRequest, grpc_context=None):
        async with self.in_flight(grpc_context):  # counted for the drain, refused once it began
            try:
                self._authorise(grpc_context)
                if not request.images:
                    raise GatewayError(grpc.StatusCode.INVALID_ARGUMENT, "empty request: no images")
            except GatewayError as exc:
                self._fail(grpc_context, exc)
            # Photos are labelled concurrently (their embeddings share batches) and answered in order.
            tasks = [asyncio.ensure_future(self._label(img, request.options)) for img in request.images]
            try:
                for img, task in zip(request.images, tasks):
                    try:
                        yield await task
                    except GatewayError as exc:
                        if exc.code != grpc.StatusCode.INVALID_ARGUMENT:
                            self._fail(grpc_context, exc)  # the services failed: end the stream with the code
                        yield gateway_pb2.LabelResponse(image_id=img.id, error=exc.details)
            finally:
                for task in tasks:
                    task.cancel()


def build_app(config: GatewayConfig, num_replicas: int = 1):
    """The Ray Serve application (a bound deployment) for ``serve.run``: :class:`GatewayCore`, with the
    embedding calls of concurrent requests merged into one batch (``@serve.batch``)."""
    from ray import serve

    @serve.deployment(name="Gateway", num_replicas=num_replicas, max_ongoing_requests=256,
                      ray_actor_options={"num_cpus": 1})
    class Gateway(GatewayCore):
        def __init__(self, cfg: dict):
            super().__init__(cfg)
            self._embed_batched.set_max_batch_size(self.cfg.max_batch)
            self._embed_batched.set_batch_wait_timeout_s(self.cfg.batch_wait_ms / 1000)

        @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.0)
        async def _embed_batched(self, items: list[tuple[list[bytes], float]]):
            return await self._embed_many(items)

    return Gateway.bind(asdict(config))


def app_builder(args: dict):
    """The application KubeRay's RayService deploys (serveConfigV2 ``import_path: services.gateway:app_builder``).

    ``args`` are GatewayConfig fields (values may arrive as strings from YAML); API keys come from
    ``IZNET_GATEWAY_API_KEYS`` (space-separated) in the pod's environment, never from the plain-text config.
    Replicas are sized by serveConfigV2's deployment section, not here.
    """
    defaults = GatewayConfig("", "", "")
    known = {f for f in asdict(defaults)}
    unknown = sorted(set(args) - known - {"api_keys"})
    if unknown:
        raise ValueError(f"unknown gateway args {unknown}; known: {sorted(known - {'api_keys'})}")
    typed = {k: type(getattr(defaults, k))(v) for k, v in args.items() if k != "api_keys"}
    keys = os.environ.get("IZNET_GATEWAY_API_KEYS", "").split()
    return build_app(GatewayConfig(**{**asdict(defaults), **typed, "api_keys": keys}))


#: Photos above this many pixels are annotated at a reduced size (the decoder's 1/2, 1/4 or 1/8 scale), so
#: drawing a huge photo does not decode it at full size in the gateway a second time.
ANNOTATE_MAX_PIXELS = 8_000_000


def annotated_jpeg(photo: bytes, faces, quality: int = 90) -> bytes:
    """The photo with the faces (:class:`iznet.pipeline.FaceResult`) drawn by :func:`iznet.drawing.annotate`."""
    import dataclasses

    import cv2
    import numpy as np

    from iznet.drawing import annotate
    from iznet.imageio import encode_image, image_size

    w, h = image_size(photo)
    factor = next((f for f in (1, 2, 4, 8) if w * h / (f * f) <= ANNOTATE_MAX_PIXELS), 8)
    flag = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
            8: cv2.IMREAD_REDUCED_COLOR_8}[factor]
    image = cv2.imdecode(np.frombuffer(photo, np.uint8), flag)
    if factor > 1:
        faces = [dataclasses.replace(f, box=f.box.scaled(1 / factor), landmarks=None) for f in faces]
    return encode_image(annotate(image, faces), ".jpg", quality)


# ------------------------------------------------------------------------------------------ process




def wait_ready(address: str, timeout: float = 150.0) -> None:
    """Until the Serve gRPC proxy answers its health check with the application up."""
    from ray.serve.generated import serve_pb2, serve_pb2_grpc

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = serve_pb2_grpc.RayServeAPIServiceStub(channel)
        while True:
            try:
                apps = stub.ListApplications(serve_pb2.ListApplicationsRequest(), timeout=2)
                if apps.application_names:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"gateway at {address} not ready after {timeout:.0f}s")
            time.sleep(0.2)


@click.command()
@click.option("--detection", required=True, help="Detection service HOST:PORT.")
@click.option("--embedding", required=True, help="Embedding service HOST:PORT.")
@click.option("--gallery", required=True, help="Gallery service HOST:PORT.")
@click.option("--default-gallery", default="", help="Gallery used when a request names none (empty: the "
              "gallery service's default).")
@click.option("--port", default=0, type=int, show_default=True, help="gRPC port of the gateway; 0 picks a free one.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address the gRPC ingress and the local Ray node listen on (0.0.0.0: every interface).")
@click.option("--api-key", "api_keys", multiple=True, help="Accept only calls with this x-api-key (repeatable).")
@click.option("--crop-size", default=CROP_SIZE, show_default=True, type=int, help="Side of the aligned face crops.")
@click.option("--timeout", default=30.0, show_default=True, type=float, help="Budget for one photo, seconds.")
@click.option("--call-timeout", default=10.0, show_default=True, type=float,
              help="Deadline of one call to a service, seconds.")
@click.option("--attempts", default=4, show_default=True, type=int,
              help="Attempts per service call when it is UNAVAILABLE.")
@click.option("--max-batch", default=16, show_default=True, type=int,
              help="Most concurrent requests whose embeddings share one call.")
@click.option("--batch-wait-ms", default=0.0, show_default=True, type=float,
              help="How long a batch waits for more requests, ms (0: a lone request never waits; requests "
                   "arriving while a batch is embedded join the next).")
@click.option("--max-message-mb", default=32, show_default=True, type=int, help="Largest gRPC message, MiB.")
@click.option("--replicas", default=1, show_default=True, type=int, help="Gateway replicas.")
@click.option("--num-cpus", default=2, show_default=True, type=int, help="CPUs the local Ray instance may use.")
@click.option("--object-store-mb", default=100, show_default=True, type=int,
              help="Ray object store size, MiB (the gateway keeps little in it).")
@click.option("--drain-timeout", default=10.0, show_default=True, type=float,
              help="On SIGTERM/SIGINT: seconds calls in flight get to finish (new ones are refused) before Serve stops.")
def main(detection, embedding, gallery, default_gallery, port, host, api_keys, crop_size, timeout, call_timeout, attempts,
         max_batch, batch_wait_ms, max_message_mb, replicas, num_cpus, object_store_mb, drain_timeout):
    """The Ray Serve gateway (starts a local Ray instance; stops it on SIGTERM/SIGINT)."""
    os.environ["RAY_SERVE_GRPC_MAX_MESSAGE_SIZE"] = str(max_message_mb * 1024 * 1024)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Ray Serve kills an ingress proxy that is not ready within 3 x 5 s; on a busy node (training beside the
    # stack) its worker needs longer just to start, and the gateway would never come up. Give it 30 s a check.
    os.environ.setdefault("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", "30")
    from services.loopback import ray_init_options  # hardening: Ray's node and the ingress on --host only

    ray_opts = ray_init_options(host)
    local = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    import ray
    from ray import serve
    from ray.serve.config import gRPCOptions

    port = port or free_port()
    config = GatewayConfig(detection, embedding, gallery, default_gallery, crop_size, timeout, call_timeout, attempts,
                           max_batch, batch_wait_ms, max_message_mb, list(api_keys))
    for attempt in range(3):  # on a loaded machine the raylet can miss Ray's fixed 30 s start-up window
        try:
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False,
                     object_store_memory=object_store_mb * 2**20, log_to_driver=False, configure_logging=False,
                     **ray_opts)
            break
        except Exception as exc:  # noqa: BLE001 - Ray raises a bare Exception for this
            if "timed out during startup" not in str(exc) or attempt == 2:
                raise
            print(f"gateway: Ray start-up timed out (attempt {attempt + 1}); trying again", file=sys.stderr, flush=True)
            ray.shutdown()
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    try:
        serve.start(http_options={"host": local, "port": free_port(local)},
                    grpc_options=gRPCOptions(port=port, grpc_servicer_functions=[SERVICER_FUNCTION]))
        serve.run(build_app(config, replicas), name="iznet", blocking=False)
        wait_ready(f"{local}:{port}")
        print("READY " + json.dumps({"service": "gateway", "address": f"{local}:{port}", "port": port}), flush=True)
        stopping.wait()
    finally:
        print("gateway: shutting down", file=sys.stderr, flush=True)
        try:
            if stopping.is_set():  # hardening: finish the calls in flight, refuse new ones, then stop
                from services.drain import drain_app

                drain_app("iznet", replicas, drain_timeout, say=lambda m: print(m, file=sys.stderr, flush=True))
            serve.shutdown()
        finally:
            ray.shutdown()


if __name__ == "__main__":
    main(auto_envvar_prefix="IZNET_GATEWAY")
