"""What every IZ*Net gRPC server shares, so that each server is only its protobuf <-> core translation.

- :func:`serve`: a ``grpc.server`` with message size limits and a bounded thread pool, the standard health
  checking and reflection services, a Prometheus ``/metrics`` HTTP endpoint, a ``READY {json}`` line on stdout
  once listening (what ``iznet up`` and the tests wait for), and graceful shutdown on SIGTERM/SIGINT (health
  goes NOT_SERVING, new calls are refused, calls in flight get ``--grace`` seconds to finish).
- :class:`ServiceInterceptor`: per call, checks the caller's API key (:class:`Keys`: write keys may call
  everything, read keys only the read methods of ``READ_METHODS``; health and reflection are open), counts
  (method, code), times it, and maps ``iznet.errors`` exceptions to their gRPC code with the message as the
  details; anything else becomes INTERNAL with a one-line reason (logged with its traceback on the server),
  never a crash or a hang.
- :func:`check_deadline`: handlers call it between items of a batch, so an expired deadline stops the work.
- Conversions between core types and messages.
"""

from __future__ import annotations

import collections
import hmac
import json
import logging
import os
import re
import signal
import sys
import threading
import time
from concurrent import futures
from dataclasses import dataclass
from typing import Callable, Iterable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from iznet.errors import IZNetError
from iznet.wire import gallery_version_pb, model_version_pb  # noqa: F401 - the servers' conversions
from iznet.v1 import common_pb2

log = logging.getLogger("iznet.services")

MiB = 1024 * 1024
DEFAULT_MAX_MESSAGE_MB = 32

REGISTRY = CollectorRegistry()
REQUESTS = Counter("iznet_grpc_requests", "gRPC calls answered, by method and status code",
                   ["service", "method", "code"], registry=REGISTRY)
LATENCY = Histogram("iznet_grpc_latency_seconds", "Time to answer a gRPC call", ["service", "method"],
                    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
                    registry=REGISTRY)
RESTARTS = Gauge("iznet_restarts", "Times the supervisor restarted this service after it died", ["service"],
                 registry=REGISTRY)
BATCH = Histogram("iznet_batch_size", "Items (images, crops, vectors) per batched call", ["service", "method"],
                  buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=REGISTRY)


def observe_batch(service: str, method: str, n: int) -> None:
    BATCH.labels(service, method).observe(n)


class _Aborted(Exception):
    pass


def check_deadline(context: grpc.ServicerContext, what: str = "the call") -> None:
    """Stop work whose caller has gone (deadline passed or cancelled)."""
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, f"deadline exceeded during {what}")
    if not context.is_active():
        context.abort(grpc.StatusCode.CANCELLED, f"cancelled by the caller during {what}")


# ------------------------------------------------------------------------------------------- API keys

#: The metadata key callers send their API key in (the gateway's too).
API_KEY_HEADER = "x-api-key"
#: Keys with write rights (every method), and keys that may only call the read methods: space- or
#: comma-separated, from the environment (never from the command line, where ``ps`` shows them).
WRITE_KEYS_ENV = "IZNET_API_KEYS"
READ_KEYS_ENV = "IZNET_READ_KEYS"
#: The key a caller inside the stack (the gateway) sends to the services.
SERVICE_TOKEN_ENV = "IZNET_SERVICE_TOKEN"
#: How many times the supervisor (``iznet up``) restarted this process; exported as ``iznet_restarts``.
RESTARTS_ENV = "IZNET_RESTARTS"

#: Per gRPC service, the methods a read key may call. Every other method of an IZ*Net service needs a write key
#: (so a method added later is a write until it is listed here).
READ_METHODS: dict[str, frozenset[str]] = {
    "iznet.v1.Detection": frozenset({"Detect", "GetModel"}),
    "iznet.v1.Embedding": frozenset({"Embed", "GetModel"}),
    "iznet.v1.Gallery": frozenset({"Search", "ListPeople", "GetVersion"}),
}
#: Open to anyone: Kubernetes' probes send no metadata, and reflection only describes the public contract.
OPEN_SERVICES = ("grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection",
                 "grpc.reflection.v1.ServerReflection")


def _split_keys(raw: str | None) -> frozenset[str]:
    return frozenset(k for k in (raw or "").replace(",", " ").split() if k)


@dataclass(frozen=True)
class Keys:
    """The API keys one server accepts. With none at all, reads are open and every write is refused."""

    write: frozenset[str] = frozenset()
    read: frozenset[str] = frozenset()

    @classmethod
    def from_env(cls, env=None) -> "Keys":
        env = os.environ if env is None else env
        return cls(_split_keys(env.get(WRITE_KEYS_ENV)), _split_keys(env.get(READ_KEYS_ENV)))

    @property
    def configured(self) -> bool:
        return bool(self.write or self.read)

    def rights(self, key: str | None) -> str | None:
        """"write", "read" or None, comparing in constant time."""
        if not key:
            return None
        given = key.encode()
        if any(hmac.compare_digest(given, k.encode()) for k in self.write):
            return "write"
        if any(hmac.compare_digest(given, k.encode()) for k in self.read):
            return "read"
        return None

    def check(self, full_method: str, metadata) -> tuple[grpc.StatusCode, str] | None:
        """None when the call may go on, else (code, reason)."""
        service, _, method = full_method.lstrip("/").rpartition("/")
        if service in OPEN_SERVICES:
            return None
        needs = "read" if method in READ_METHODS.get(service, ()) else "write"
        key = next((v for k, v in (metadata or ()) if k == API_KEY_HEADER), None)
        if not self.configured:
            if needs == "read":
                return None
            return (grpc.StatusCode.UNAUTHENTICATED,
                    f"{method} needs an API key with write rights, and this server accepts none "
                    f"(start it with {WRITE_KEYS_ENV} set)")
        rights = self.rights(key)
        if rights is None:
            return (grpc.StatusCode.UNAUTHENTICATED,
                    f"{'wrong' if key else 'missing'} API key for {method} (send it as '{API_KEY_HEADER}' metadata)")
        if needs == "write" and rights != "write":
            return (grpc.StatusCode.PERMISSION_DENIED,
                    f"{method} changes state and needs an API key with write rights; this key may only read")
        return None


def service_metadata(env=None) -> tuple[tuple[str, str], ...] | None:
    """The metadata a caller inside the stack sends to the services (the service token), or None."""
    token = (os.environ if env is None else env).get(SERVICE_TOKEN_ENV, "").strip()
    return ((API_KEY_HEADER, token),) if token else None


def key_metadata(key: str | None) -> tuple[tuple[str, str], ...] | None:
    return ((API_KEY_HEADER, key),) if key else None


class _CallDetails(collections.namedtuple("_CallDetails", "method timeout metadata credentials wait_for_ready "
                                                          "compression"), grpc.ClientCallDetails):
    pass


class _WithKey(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
               grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    def __init__(self, key: str):
        self.key = key

    def _details(self, d):
        md = [*(d.metadata or ()), (API_KEY_HEADER, self.key)]
        return _CallDetails(d.method, d.timeout, md, d.credentials, getattr(d, "wait_for_ready", None),
                            getattr(d, "compression", None))

    def intercept_unary_unary(self, continuation, d, request):
        return continuation(self._details(d), request)

    def intercept_unary_stream(self, continuation, d, request):
        return continuation(self._details(d), request)

    def intercept_stream_unary(self, continuation, d, it):
        return continuation(self._details(d), it)

    def intercept_stream_stream(self, continuation, d, it):
        return continuation(self._details(d), it)


def keyed_channel(address: str, key: str | None, options=None) -> grpc.Channel:
    """A channel whose every call carries ``key`` as ``x-api-key`` metadata (none: a plain channel)."""
    channel = grpc.insecure_channel(address, options=options or channel_options())
    return grpc.intercept_channel(channel, _WithKey(key)) if key else channel


def _denied_handler(handler, code: grpc.StatusCode, reason: str, count):
    def deny(_request, context):
        count()
        log.warning("refused %s from %s: %s", code.name, context.peer(), reason)
        context.abort(code, reason)

    kw = {"request_deserializer": handler.request_deserializer,
          "response_serializer": handler.response_serializer}
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(deny, **kw)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(deny, **kw)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(deny, **kw)
    return grpc.stream_stream_rpc_method_handler(deny, **kw)


class ServiceInterceptor(grpc.ServerInterceptor):
    """API keys, metrics and the error mapping for every call of one service."""

    def __init__(self, service: str, keys: Keys | None = None):
        self.service = service
        self.keys = keys if keys is not None else Keys()

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method.rsplit("/", 1)[-1]
        service = self.service
        denied = self.keys.check(handler_call_details.method, handler_call_details.invocation_metadata)
        if denied is not None:
            return _denied_handler(handler, *denied,
                                   lambda: REQUESTS.labels(service, method, denied[0].name).inc())
        if handler.unary_unary is None:
            return handler  # health watch, reflection streams: leave them alone
        inner = handler.unary_unary

        def wrapped(request, context):
            start = time.perf_counter()
            code = "OK"
            try:
                return inner(request, context)
            except IZNetError as exc:
                code = exc.grpc_code
                context.abort(getattr(grpc.StatusCode, exc.grpc_code), public_details(exc))
            except Exception as exc:  # noqa: BLE001
                got = context.code() if hasattr(context, "code") else None
                if got is not None and got != grpc.StatusCode.OK:  # the handler aborted with a code
                    code = got.name
                    raise
                code = "INTERNAL"
                log.exception("%s/%s failed", service, method)
                context.abort(grpc.StatusCode.INTERNAL,
                              public_details(f"internal error: {exc.__class__.__name__}: {exc}")[:500])
            finally:
                REQUESTS.labels(service, method, code).inc()
                LATENCY.labels(service, method).observe(time.perf_counter() - start)

        return grpc.unary_unary_rpc_method_handler(
            wrapped, request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer)


_PATH = re.compile(r"(?<![\w.:/-])(?:~|/)(?:[^\s'\"():,;]+/)+[^\s'\"():,;]*|(?<![\w.:/-])/(?:tmp|home|var|root|"
                   r"opt|srv|data|mnt|etc|usr|work)\b[^\s'\"():,;]*")
_ADDRESS = re.compile(r"(?:ipv[46]:)?(?:\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:]+\]|localhost):\d{1,5}")


def public_details(text: str) -> str:
    """Error details fit to leave the server: no filesystem paths of this machine, no internal addresses."""
    return _ADDRESS.sub("<address>", _PATH.sub("<path>", str(text)))


def channel_options(max_message_mb: int = DEFAULT_MAX_MESSAGE_MB) -> list[tuple[str, int]]:
    """Message size limits (both ways) and quick reconnects (a restarted peer is found within a second)."""
    return [
        ("grpc.max_receive_message_length", max_message_mb * MiB),
        ("grpc.max_send_message_length", max_message_mb * MiB),
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 1000),
    ]


@dataclass
class ServerOptions:
    host: str = "127.0.0.1"
    port: int = 0
    metrics_port: int = 0
    max_message_mb: int = DEFAULT_MAX_MESSAGE_MB
    workers: int = 4
    grace_s: float = 5.0


def serve(name: str, full_service_names: Iterable[str], add_servicers: Callable[[grpc.Server], None],
          opts: ServerOptions, on_stop: Callable[[], None] | None = None) -> None:
    """Run a gRPC server until SIGTERM/SIGINT, then shut it down gracefully. Prints ``READY {json}``."""
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {name} %(levelname)s %(message)s", stream=sys.stderr)
    keys = Keys.from_env()
    try:
        RESTARTS.labels(name).set(int(os.environ.get(RESTARTS_ENV, "0") or 0))
    except ValueError:
        RESTARTS.labels(name).set(0)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=opts.workers, thread_name_prefix=name),
        interceptors=[ServiceInterceptor(name, keys)],
        options=[("grpc.max_receive_message_length", opts.max_message_mb * MiB),
                 ("grpc.max_send_message_length", opts.max_message_mb * MiB),
                 ("grpc.so_reuseport", 0)],
        maximum_concurrent_rpcs=opts.workers * 16,
    )
    add_servicers(server)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = list(full_service_names)
    reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    port = server.add_insecure_port(f"{opts.host}:{opts.port}")
    if port == 0:
        raise SystemExit(f"{name}: cannot listen on {opts.host}:{opts.port} (in use?)")
    http, _ = start_http_server(opts.metrics_port, addr=opts.host, registry=REGISTRY)
    metrics_port = http.server_port
    server.start()
    for svc in ["", *names]:
        health_servicer.set(svc, health_pb2.HealthCheckResponse.SERVING)

    stopping = threading.Event()

    def on_signal(signum, _frame):
        log.info("signal %s: shutting down (grace %.1fs)", signum, opts.grace_s)
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print("READY " + json.dumps({"service": name, "address": f"{opts.host}:{port}", "port": port,
                                 "metrics_port": metrics_port}), flush=True)
    log.info("listening on %s:%d, metrics on :%d", opts.host, port, metrics_port)
    if keys.configured:
        log.info("API keys required: %d with write rights, %d read-only", len(keys.write), len(keys.read))
    else:
        log.warning("no API keys configured (%s, %s): reads are open to anyone who reaches %s:%d, writes are "
                    "refused", WRITE_KEYS_ENV, READ_KEYS_ENV, opts.host, port)
    stopping.wait()
    health_servicer.enter_graceful_shutdown()
    server.stop(opts.grace_s).wait()
    http.shutdown()
    if on_stop:
        on_stop()
    log.info("stopped")


def server_options(host: str, port: int, metrics_port: int, max_message_mb: int, workers: int,
                   grace: float) -> ServerOptions:
    return ServerOptions(host, port, metrics_port, max_message_mb, workers, grace)


def common_click_options(fn):
    """The flags every server takes (also from IZNET_<SERVICE>_<FLAG> environment variables)."""
    import click

    for opt in reversed([
        click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on."),
        click.option("--port", default=0, show_default=True, type=int, help="gRPC port; 0 picks a free one."),
        click.option("--metrics-port", default=0, show_default=True, type=int,
                     help="Prometheus /metrics HTTP port; 0 picks a free one."),
        click.option("--max-message-mb", default=DEFAULT_MAX_MESSAGE_MB, show_default=True, type=int,
                     help="Largest gRPC message accepted or sent, in MiB."),
        click.option("--workers", default=4, show_default=True, type=int, help="Threads answering calls."),
        click.option("--grace", default=5.0, show_default=True, type=float,
                     help="Seconds calls in flight get to finish on SIGTERM/SIGINT."),
        click.option("--torch-threads", default=1, show_default=True, type=int,
                     help="Threads torch/OpenCV may use per call (the machine is shared)."),
    ]):
        fn = opt(fn)
    return fn


def limit_threads(n: int) -> None:
    import cv2

    cv2.setNumThreads(max(1, n))
    os.environ["OMP_NUM_THREADS"] = str(max(1, n))
    if "torch" in sys.modules:  # only when a model already brought it in (importing it costs seconds)
        sys.modules["torch"].set_num_threads(max(1, n))
    if "faiss" in sys.modules:  # FAISS's OpenMP threads spin badly on a busy machine
        sys.modules["faiss"].omp_set_num_threads(max(1, n))


# ------------------------------------------------------------------------------------------- conversions


def timings_pb(ms: dict[str, float]) -> common_pb2.Timings:
    return common_pb2.Timings(ms={k: float(v) for k, v in ms.items()})


def run(command) -> None:
    """Run a server's click command: user mistakes (a missing gallery, a bad flag) print one line, exit 2."""
    import click

    try:
        command.main(standalone_mode=False, auto_envvar_prefix="IZNET")
    except IZNetError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
