"""Keep the local stack on the address it was asked for (loopback by default), and check that it is.

- :func:`ray_init_options`: what the gateway passes to ``ray.init`` (and sets in its environment before Ray is
  imported) so that the local Ray node's own servers (GCS, raylet, object manager, core workers of the driver,
  Serve controller, proxy and replicas, dashboard and runtime-env agents) listen on ``host`` only.
  Ray binds its C++ gRPC servers to 127.0.0.1 only when the node's IP is 127.0.0.1, and on Linux it turns a
  node IP of ``127.0.0.1`` into the machine's address unless ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (the switch
  that makes Ray use loopback on a Mac); so both are set for a loopback host.
- Ray's token authentication on, with a random token of this gateway's own (``RAY_AUTH_TOKEN`` in the
  environment of the Ray processes), so a local process that reaches Ray's loopback ports cannot use them.
- :func:`pin_serve_grpc`: a Ray worker setup hook. Ray Serve binds its gRPC ingress on ``[::]:PORT``
  (``ray.serve._private.grpc_util.start_grpc_server``) and each replica's inter-deployment gRPC server on
  ``[::]:0`` (``replica.py``), with no option for the host; the hook makes them bind ``$IZNET_GATEWAY_HOST``.
- :func:`listeners`: the TCP sockets a process tree listens on, from ``/proc`` (what ``ss -ltnp`` shows), so
  ``iznet up`` and the tests can check that nothing listens beyond the host asked for.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

HOST_ENV = "IZNET_GATEWAY_HOST"
LOOPBACK = "127.0.0.1"


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def ray_init_options(host: str) -> dict:
    """``ray.init`` keyword arguments for a single local node serving on ``host``; for a loopback host it also
    sets the environment Ray reads at import (call it before ``import ray``)."""
    opts: dict = {"runtime_env": {"worker_process_setup_hook": "services.loopback.pin_serve_grpc",
                                  "env_vars": {HOST_ENV: host}}}
    os.environ[HOST_ENV] = host
    # Ray's own token authentication, with a token of this gateway's only, passed by environment to the Ray
    # processes it starts (not Ray's default ~/.ray/auth_token, a file every local user may read).
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    if os.environ["RAY_AUTH_MODE"] == "token":
        os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
    if is_loopback(host):
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # keep node IP 127.0.0.1 (see the module docstring)
        opts.update(_node_ip_address=LOOPBACK, dashboard_host=LOOPBACK)
    return opts


def _pinned(original, host: str):
    """``original(server, address)`` with a wildcard address (``[::]:P``, ``0.0.0.0:P``) bound on ``host``."""
    if getattr(original, "_iznet_pinned", False):
        return original
    bind = f"[{host}]" if ":" in host else host

    def add(grpc_server, address: str):
        where, _, port = address.rpartition(":")
        if where in ("[::]", "0.0.0.0", "::", ""):
            address = f"{bind}:{port}"
        return original(grpc_server, address)

    add._iznet_pinned = True
    return add


def pin_serve_grpc() -> None:
    """Ray worker setup hook: Serve's gRPC servers bind ``$IZNET_GATEWAY_HOST`` instead of ``[::]``: the ingress
    of the proxy (``default_impl.add_grpc_address``) and each replica's inter-deployment server
    (``tls_utils.add_port_to_grpc_server``, which ``replica.py`` imports by name when its actor is made)."""
    host = os.environ.get(HOST_ENV, "")
    if not host or host in ("0.0.0.0", "::"):
        return
    import sys

    from ray._common import tls_utils
    from ray.serve._private import default_impl

    default_impl.add_grpc_address = _pinned(default_impl.add_grpc_address, host)
    tls_utils.add_port_to_grpc_server = _pinned(tls_utils.add_port_to_grpc_server, host)
    replica = sys.modules.get("ray.serve._private.replica")
    if replica is not None:
        replica.add_port_to_grpc_server = tls_utils.add_port_to_grpc_server


# --------------------------------------------------------------------------------------------- listeners


@dataclass(frozen=True)
class Listener:
    pid: int
    command: str
    host: str
    port: int

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host.removeprefix("::ffff:"))

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port} ({self.command}, pid {self.pid})"


def _listening_sockets() -> dict[int, tuple[str, int]]:
    """socket inode -> (host, port) of every TCP socket in LISTEN state on this machine's network namespace."""
    out: dict[int, tuple[str, int]] = {}
    for name, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        try:
            lines = Path(f"/proc/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) < 10 or cols[3] != "0A":  # 0A: TCP_LISTEN
                continue
            hexaddr, hexport = cols[1].split(":")
            raw = bytes.fromhex(hexaddr)
            # /proc writes the address as native-endian 32-bit words
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            out[int(cols[9])] = (socket.inet_ntop(family, raw), int(hexport, 16))
    return out


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        ppid = int(text.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(stat.parent.name))
    return kids


def process_tree(pids) -> set[int]:
    """``pids`` and all their descendants."""
    kids, seen, todo = _children(), set(), list(pids)
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo.extend(kids.get(pid, ()))
    return seen


def listeners(pids, descendants: bool = True) -> list[Listener]:
    """The TCP listeners of ``pids`` (and, by default, of all their descendants)."""
    socks = _listening_sockets()
    out = []
    for pid in sorted(process_tree(pids) if descendants else set(pids)):
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
            command = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        seen = set()
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inode = int(target[8:-1])
                if inode in socks and inode not in seen:
                    seen.add(inode)
                    out.append(Listener(pid, command, *socks[inode]))
    return out


def beyond(host: str, found: list[Listener]) -> list[Listener]:
    """The listeners that are not on ``host`` (for a loopback host: not on loopback)."""
    if is_loopback(host):
        return [item for item in found if not item.loopback]
    if host in ("0.0.0.0", "::", ""):
        return []
    return [item for item in found if item.host.removeprefix("::ffff:") != host and not item.loopback]
