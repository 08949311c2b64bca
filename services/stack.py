"""Start the three services and the gateway as local processes on free loopback ports, and stop them cleanly.

Used by ``iznet up`` and by the end-to-end tests (one stack per test module). Each process prints
``READY {json}`` on stdout once it listens; :class:`Stack` waits for that line, so a stack that started is a
stack that answers. Logs go to ``<log_dir>/<service>.log``.

Authentication inside the stack: at start the stack makes a random service token and hands it to its own
processes by environment (never on a command line, where ``ps`` shows it): the services accept it as a
read-only key (``IZNET_READ_KEYS``), the gateway sends it on every call to them (``IZNET_SERVICE_TOKEN``).
The user's ``api_keys`` are the gateway's keys (``IZNET_GATEWAY_API_KEYS``) and the services' keys with write
rights (``IZNET_API_KEYS``); ``read_keys`` are read-only keys of both. A process that has none of them can
call nothing on the services but their health and reflection.

Lifetime: every process dies with the one that started it, even when that one is SIGKILLed (an OOM kill, a
crashed supervisor): it asks the kernel for SIGTERM when its parent goes (``PR_SET_PDEATHSIG``; Ray's own
processes share the gateway's fate), so no orphan keeps the ports and the store. The kernel ties this to the
*thread* that started the process: start and restart from a thread that lives as long as the stack (the main
thread, in ``iznet up``). :meth:`Stack.stop` stops the gateway first (it drains: new calls refused, those in
flight finished, up to its ``--drain-timeout``), then the services it depends on. :meth:`Stack.supervise`
restarts a process that died, with backoff, on its own port, and gives up (with the reason) after too many
restarts in a row.
"""

from __future__ import annotations

import ctypes
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from iznet.errors import PreconditionError

_PR_SET_PDEATHSIG = 1
try:  # loaded before any fork: the child only calls it (no dlopen, no lock, between fork and exec)
    _prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None
except (OSError, AttributeError):
    _prctl = None


def _die_with_parent(parent: int):
    """preexec_fn: SIGTERM to the child when the thread that started it dies; none if that already happened."""

    def set_up() -> None:
        if _prctl is not None:
            _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request took effect
            os._exit(1)

    return set_up


@dataclass
class Proc:
    name: str
    args: list[str]
    log_path: Path
    popen: subprocess.Popen | None = None
    info: dict = field(default_factory=dict)

    @property
    def address(self) -> str:
        return self.info["address"]

    def start(self, env: dict, timeout: float) -> "Proc":
        return self.launch(env).wait_ready(timeout)

    def launch(self, env: dict) -> "Proc":
        log = open(self.log_path, "ab")
        self.popen = subprocess.Popen([sys.executable, *self.args], stdout=subprocess.PIPE, stderr=log, env=env,
                                      start_new_session=True, preexec_fn=_die_with_parent(os.getpid()))
        ready: dict = {}

        def read():
            for raw in self.popen.stdout:
                line = raw.decode(errors="replace").rstrip()
                if line.startswith("READY ") and not ready:
                    ready.update(json.loads(line[6:]))
                log.write(raw)
                log.flush()

        self._ready = ready
        threading.Thread(target=read, daemon=True).start()
        return self

    def wait_ready(self, timeout: float) -> "Proc":
        ready = self._ready
        deadline = time.monotonic() + timeout
        while not ready:
            if self.popen.poll() is not None:
                raise PreconditionError(f"{self.name} exited with {self.popen.returncode} before it was ready: "
                                        f"{self.tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise PreconditionError(f"{self.name} not ready after {timeout:.0f}s: {self.tail()}")
            time.sleep(0.05)
        self.info = ready
        return self

    def tail(self, n: int = 5) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(lines[-n:]) or f"(no output; see {self.log_path})"

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def note(self, line: str) -> None:
        """A line from the supervisor in this process's log."""
        with open(self.log_path, "a") as fh:
            fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} supervisor: {line}\n")

    def stop(self, grace: float = 20.0) -> int | None:
        """SIGTERM (graceful shutdown), then SIGKILL of its process group after ``grace`` seconds."""
        if self.popen is None or self.popen.poll() is not None:
            return None if self.popen is None else self.popen.returncode
        self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            return self.popen.wait()

    def kill(self) -> None:
        """Hard kill (a crash, for fault tests)."""
        if self.alive():
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()


#: Key variables never inherited from the caller's environment: each process gets exactly its own.
_KEY_ENV = frozenset({"IZNET_API_KEYS", "IZNET_READ_KEYS", "IZNET_SERVICE_TOKEN", "IZNET_GATEWAY_API_KEYS"})


@dataclass
class StackConfig:
    store: Path
    gallery: str = "default"
    #: models/<name> in the store, or any embedder spec (default, dlib-resnet, baseline-lbp, a model's folder).
    model: str = "default"
    detector: str = "default"
    #: Keys the gateway accepts and the services take as keys with write rights.
    api_keys: list[str] = field(default_factory=list)
    #: Keys the gateway accepts and the services take as read-only keys.
    read_keys: list[str] = field(default_factory=list)
    poll_s: float = 1.0
    host: str = "127.0.0.1"
    gateway_port: int = 0
    workers: int = 4
    log_dir: Path | None = None
    extra_gateway_args: list[str] = field(default_factory=list)
    #: Seconds the gateway gets on stop to finish the calls in flight (its --drain-timeout).
    drain_s: float = 10.0
    #: Supervision: restarts allowed per process within ``restart_window_s`` before giving up; the first
    #: restart waits ``backoff_s``, each next one twice as long, at most ``max_backoff_s``.
    max_restarts: int = 5
    restart_window_s: float = 120.0
    backoff_s: float = 0.5
    max_backoff_s: float = 10.0


class Stack:
    def __init__(self, cfg: StackConfig):
        self.cfg = cfg
        self.log_dir = Path(cfg.log_dir or Path(cfg.store) / "logs")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, Proc] = {}
        #: Restarts so far, per process (also in its log and, as IZNET_RESTARTS, in its metrics).
        self.restarts: dict[str, int] = {}
        #: The key the gateway (and a test, or an operator's tool in this process) sends to the services.
        self.token = secrets.token_urlsafe(32)
        inherited = {k: v for k, v in os.environ.items() if k not in _KEY_ENV}
        self.env = {**inherited, "IZNET_STORE": str(cfg.store), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}

    def env_for(self, name: str) -> dict[str, str]:
        """The environment of one process: the common one plus the keys its role needs (and no others)."""
        from services.common import READ_KEYS_ENV, RESTARTS_ENV, SERVICE_TOKEN_ENV, WRITE_KEYS_ENV

        c = self.cfg
        if name == "gateway":
            env = {**self.env, SERVICE_TOKEN_ENV: self.token}
            if c.api_keys or c.read_keys:
                env["IZNET_GATEWAY_API_KEYS"] = " ".join([*c.api_keys, *c.read_keys])
            return env
        env = {**self.env, READ_KEYS_ENV: " ".join([self.token, *c.read_keys]),
               RESTARTS_ENV: str(self.restarts.get(name, 0))}
        if c.api_keys:
            env[WRITE_KEYS_ENV] = " ".join(c.api_keys)
        return env

    def _service_args(self, name: str, port: int = 0) -> list[str]:
        c = self.cfg
        args = ["-m", f"services.{name}", "--host", c.host, "--port", str(port), "--workers", str(c.workers)]
        if name == "detection":
            args += ["--detector", c.detector]
        elif name == "embedding":
            args += ["--store", str(c.store), "--model", c.model, "--poll", str(c.poll_s)]
        elif name == "gallery":
            args += ["--store", str(c.store), "--gallery", c.gallery, "--poll", str(c.poll_s)]
        return args

    def start_service(self, name: str, port: int = 0, timeout: float = 60.0) -> Proc:
        proc = Proc(name, self._service_args(name, port), self.log_dir / f"{name}.log")
        self.procs[name] = proc.start(self.env_for(name), timeout)
        return proc

    def restart_service(self, name: str, timeout: float | None = None) -> Proc:
        """Start a stopped (or dead) process again on the same port, so the others keep its address."""
        old = self.procs[name]
        old.stop(self._grace(name))
        if name == "gateway":
            args = old.args  # its port is always explicit
        else:
            args = self._service_args(name, old.info.get("port") or self._port_arg(old.args))
        proc = Proc(name, args, old.log_path)
        self.procs[name] = proc
        return proc.start(self.env_for(name), timeout or (240.0 if name == "gateway" else 60.0))

    @staticmethod
    def _port_arg(args: list[str]) -> int:
        return int(args[args.index("--port") + 1]) if "--port" in args else 0

    def _grace(self, name: str) -> float:
        return self.cfg.drain_s + 30.0 if name == "gateway" else 20.0

    def start(self, timeout: float = 180.0) -> "Stack":
        """Launch all four processes at once (ports chosen up front), then wait until each is ready."""
        from iznet.ports import free_port

        c = self.cfg
        try:
            ports = {name: free_port(c.host) for name in ("detection", "embedding", "gallery")}
            for name, port in ports.items():
                self.procs[name] = Proc(name, self._service_args(name, port), self.log_dir / f"{name}.log")
            dial = "127.0.0.1" if c.host in ("0.0.0.0", "::", "") else c.host  # where the gateway finds them
            args = ["-m", "services.gateway", *[a for n, p in ports.items() for a in (f"--{n}", f"{dial}:{p}")],
                    "--host", c.host, "--port", str(c.gateway_port or free_port(c.host)),
                    "--drain-timeout", str(c.drain_s), *c.extra_gateway_args]
            self.procs["gateway"] = Proc("gateway", args, self.log_dir / "gateway.log")
            for name, proc in self.procs.items():
                proc.launch(self.env_for(name))
            for proc in self.procs.values():
                proc.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def gateway(self) -> str:
        return self.procs["gateway"].address

    def pids(self) -> list[int]:
        return [p.popen.pid for p in self.procs.values() if p.popen is not None]

    def listeners(self):
        """Every TCP listener of the stack's processes and their children (Ray's among them)."""
        from services.loopback import listeners

        return listeners(self.pids())

    def listeners_beyond_host(self):
        """The listeners not on the host asked for (none, unless something could not be pinned)."""
        from services.loopback import beyond

        return beyond(self.cfg.host, self.listeners())

    def addresses(self) -> dict[str, dict]:
        return {name: p.info for name, p in self.procs.items()}

    def stop(self) -> dict[str, int | None]:
        """In dependency order: the gateway first (it drains), then the services it calls; each exit status."""
        codes = {}
        for name in ("gateway", "detection", "embedding", "gallery"):
            if name in self.procs:
                codes[name] = self.procs[name].stop(self._grace(name))
        return codes

    def supervise(self, stopping: threading.Event, say=print, poll_s: float = 0.5) -> str | None:
        """Until ``stopping`` is set: restart any process that died, on its port, with backoff; the others keep
        running. Returns None when stopped, or why it gave up (a process died ``max_restarts`` times within
        ``restart_window_s``, or could not be started again)."""
        c = self.cfg
        recent: dict[str, deque] = {}
        while not stopping.wait(poll_s):
            for name, proc in list(self.procs.items()):
                if proc.alive() or stopping.is_set():
                    continue
                status = proc.popen.returncode if proc.popen is not None else None
                now = time.monotonic()
                times = recent.setdefault(name, deque())
                while times and now - times[0] > c.restart_window_s:
                    times.popleft()
                if len(times) >= c.max_restarts:
                    reason = (f"{name} died {len(times) + 1} times within {c.restart_window_s:.0f}s (last exit status "
                              f"{status}); giving up (see {proc.log_path})")
                    proc.note(reason)
                    return reason
                delay = min(c.max_backoff_s, c.backoff_s * 2 ** len(times))
                times.append(now)
                self.restarts[name] = self.restarts.get(name, 0) + 1
                line = (f"{name} exited with status {status}; restart {self.restarts[name]} in {delay:.1f}s "
                        f"on port {proc.info.get('port', '?')}")
                proc.note(line)
                say(line)
                if stopping.wait(delay):
                    return None
                try:
                    started = time.monotonic()
                    self.restart_service(name)
                except PreconditionError as exc:  # it died again while starting: counted, tried again later
                    self.procs[name].note(f"restart {self.restarts[name]} failed: {exc}")
                    say(f"{name}: restart {self.restarts[name]} failed: {exc}")
                    continue
                line = f"{name} restarted (restart {self.restarts[name]}) in {time.monotonic() - started:.1f}s"
                self.procs[name].note(line)
                say(line)
        return None

    def __enter__(self) -> "Stack":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
