"""The deployment contract: what each role of the container image runs, on which ports, reading which settings.

One image serves every role. Its entry point is ``python -m services.roles ROLE [FLAGS...]``, which replaces itself
(``exec``) with the role's real command, so signals (SIGTERM on a pod's shutdown) reach the server directly::

    python -m services.roles detection --host 0.0.0.0 --port 50051 --metrics-port 9090
    python -m services.roles worker --queues cpu --concurrency 1

The Helm chart (``deploy/chart/iznet``) starts every container this way, with the flags, ports and environment
listed here. ``tests/chart/test_drift.py`` renders the chart and compares it with this table, and compares this
table with the real click commands of the servers and the CLI, so neither side can drift. This module imports
nothing heavy: ``python -m services.roles --help`` answers at once.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

#: The gRPC health service every IZ*Net server registers (``grpc.health.v1.Health``); Kubernetes' native
#: ``grpc:`` probes call it with ``service: ""`` (the server as a whole).
HEALTH_SERVICE = "grpc.health.v1.Health"

#: Where the artifact store is mounted in every pod (the chart's PersistentVolumeClaim).
STORE_MOUNT = "/var/lib/iznet"

#: Every role's Prometheus ``/metrics`` port inside the pod.
METRICS_PORT = 9090


@dataclass(frozen=True)
class Role:
    #: The role's name: a container's first argument and the chart's ``app.kubernetes.io/component``.
    name: str
    #: What ``python -m services.roles NAME`` runs: ``python -m <argv...>``.
    argv: tuple[str, ...]
    #: ``"module:attribute"`` of the click command behind ``argv`` (the drift test checks it).
    click_command: str
    #: The gRPC port (None for roles that serve no gRPC: workers).
    port: int | None
    #: Flags the chart always passes (with the gRPC/metrics ports); each must be an option of ``click_command``.
    flags: tuple[str, ...]
    #: Environment variables the chart sets and the role reads (``IZNET_STORE`` is mounted at ``STORE_MOUNT``;
    #: ``IZNET_REDIS_URL`` is built from the Redis host and the password Secret; those in ``OPTIONAL_ENV`` only
    #: in some configurations).
    env: tuple[str, ...] = field(default_factory=tuple)
    #: The prefix of click's automatic environment variables of ``click_command`` (``<prefix>_<OPTION>``).
    env_prefix: str = "IZNET"
    #: How Kubernetes probes it: ``grpc`` (native probe against grpc.health.v1.Health), ``tcp`` or ``none``.
    probe: str = "grpc"


#: The keys every gRPC service accepts (services/common.py ``Keys``): the service token the gateway sends, as a
#: read-only key, and the API keys, with write rights (only when the chart has API keys).
_KEYS_ENV = ("IZNET_READ_KEYS", "IZNET_API_KEYS")

_SERVER_FLAGS = ("--host", "--port", "--metrics-port", "--workers", "--torch-threads", "--max-message-mb", "--grace")

ROLES: dict[str, Role] = {
    r.name: r
    for r in (
        Role("detection", ("services.detection",), "services.detection.server:main", 50051,
             (*_SERVER_FLAGS, "--detector"), ("IZNET_STORE", *_KEYS_ENV)),
        # With triton.enabled the chart points the embedding service at Triton: the backend and the Triton
        # options (IZNET_TRITON_URL/_MODEL, the envvars of services/options.py's triton_options).
        Role("embedding", ("services.embedding",), "services.embedding.server:main", 50052,
             (*_SERVER_FLAGS, "--model", "--poll"),
             ("IZNET_STORE", *_KEYS_ENV, "IZNET_EMBEDDING_BACKEND", "IZNET_TRITON_URL", "IZNET_TRITON_MODEL")),
        Role("gallery", ("services.gallery",), "services.gallery.server:main", 50053,
             (*_SERVER_FLAGS, "--gallery", "--poll"), ("IZNET_STORE", *_KEYS_ENV)),
        # The Ray Serve gateway: a local single-node Ray with Serve's gRPC proxy on --port (bound on --host:
        # every interface in a pod, loopback by default), composing the three services at --detection/--embedding/--gallery. Ray Serve's proxy
        # answers no grpc.health.v1, so its probes are TCP (see deploy/README.md).
        Role("gateway", ("services.gateway",), "services.gateway:main", 50050,
             ("--host", "--port", "--detection", "--embedding", "--gallery", "--default-gallery", "--num-cpus", "--replicas",
              "--max-message-mb"),
             ("IZNET_STORE", "IZNET_SERVICE_TOKEN", "IZNET_GATEWAY_API_KEYS"), env_prefix="IZNET_GATEWAY",
             probe="tcp"),
        # A Celery worker serving one or more queues (cpu, gpu).
        Role("worker", ("iznet", "jobs", "worker"), "iznet.cli.jobs:jobs worker", None,
             ("--queues", "--concurrency", "--loglevel"), ("IZNET_STORE", "IZNET_REDIS_URL"),
             env_prefix="IZNET_JOBS_WORKER", probe="none"),
    )
}

#: Environment a role gets only in some configurations: the gateway's and the services' API keys only when API
#: keys are set, the
#: embedding service's Triton settings only with triton.enabled. The gateway reads ``--api-key`` (repeatable)
#: from IZNET_GATEWAY_API_KEYS, space-separated (click's rule for a multiple option from the environment;
#: ``main(auto_envvar_prefix="IZNET_GATEWAY")``).
OPTIONAL_ENV = frozenset({"IZNET_GATEWAY_API_KEYS", "IZNET_API_KEYS", "IZNET_EMBEDDING_BACKEND", "IZNET_TRITON_URL",
                          "IZNET_TRITON_MODEL"})

#: Under KubeRay the RayService deploys the gateway from this application builder (Ray Serve calls it with the
#: ``args`` of serveConfigV2: GATEWAY_BUILDER_ARGS, the fields of ``services.gateway.GatewayConfig``; the API keys
#: come from IZNET_GATEWAY_API_KEYS in the pods' environment, never from the plain-text config).
GATEWAY_IMPORT_PATH = "services.gateway:app_builder"
GATEWAY_BUILDER_ARGS = ("detection", "embedding", "gallery", "default_gallery", "max_message_mb")
#: The gRPC servicer function Ray Serve's gRPC proxy registers (``services.gateway.SERVICER_FUNCTION``).
GATEWAY_GRPC_SERVICER = "iznet.v1.gateway_pb2_grpc.add_GatewayServicer_to_server"


def command(role: str, extra: list[str] | tuple[str, ...] = ()) -> list[str]:
    """The process ``python -m services.roles ROLE extra...`` becomes."""
    try:
        r = ROLES[role]
    except KeyError:
        from iznet.errors import UserInputError

        raise UserInputError(f"unknown role {role!r}; roles: {', '.join(ROLES)}") from None
    return [sys.executable, "-m", *r.argv, *extra]


def _usage() -> str:
    lines = ["usage: python -m services.roles ROLE [FLAGS...]", "", "roles:"]
    for r in ROLES.values():
        port = f"gRPC :{r.port}" if r.port else "no gRPC"
        lines.append(f"  {r.name:<10} python -m {' '.join(r.argv)}  ({port}; env {', '.join(r.env)})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help"}:
        print(_usage())
        return 0 if args else 2
    if args[0] not in ROLES:
        print(f"error: unknown role {args[0]!r}; roles: {', '.join(ROLES)}", file=sys.stderr)
        return 2
    cmd = command(args[0], args[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(cmd[0], cmd)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
