"""A real Triton Inference Server on this machine, for development, tests and benchmarks on a CPU.

``nvidia-pytriton`` (PyPI) bundles a tritonserver build (2.51) whose only backend is ``python``. It wants
numpy<2, so it lives in its own virtualenv (``.venv-triton`` beside the checkout, or ``$IZNET_TRITON_VENV``),
made from PyPI by ``make triton-venv`` / ``python -m services.triton_local setup``. The server runs the store's
Triton repository with ``--model-config-name=python_cpu``: each exported version's ``model.py`` serves its
``model.onnx`` through onnxruntime (see :mod:`iznet.triton.repository`). On a GPU cluster the official Triton
image serves the same repository with its default ``config.pbtxt`` (ONNX Runtime backend) instead.

    with TritonServer(repository) as server:        # free loopback ports; waits until the models are ready
        make_backend("triton", triton_url=server.grpc_url)

    python -m services.triton_local setup              # create/refresh the venv
    python -m services.triton_local serve --store DIR  # foreground, Ctrl-C stops it (also: iznet triton serve)
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from iznet.errors import PreconditionError, UnavailableError
from iznet.ports import free_port

#: What the Triton venv holds: the server (pytriton), and what the python-backend model.py imports.
TRITON_VENV_REQUIREMENTS = ["nvidia-pytriton==0.7.0", "numpy>=1.26,<2", "onnxruntime==1.32.0"]
CPU_CONFIG_NAME = "python_cpu"
_REPO_ROOT = Path(__file__).resolve().parent.parent


def triton_venv_dir() -> Path:
    env = os.environ.get("IZNET_TRITON_VENV")
    return Path(env).expanduser() if env else _REPO_ROOT / ".venv-triton"


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _site_packages(venv: Path) -> Path:
    found = sorted((venv / "lib").glob("python3*/site-packages"))
    if not found:
        raise PreconditionError(f"{venv} is not a virtualenv (no lib/python3*/site-packages)")
    return found[0]


def _marker() -> str:
    return "\n".join(TRITON_VENV_REQUIREMENTS) + "\n"


def venv_ready(venv: Path | None = None) -> bool:
    """Made by :func:`setup_venv` with today's requirements (a changed pin makes it install again)."""
    venv = venv or triton_venv_dir()
    marker = venv / ".installed"
    return (marker.is_file() and marker.read_text() == _marker()
            and _tritonserver_home(venv, check=False) is not None)


def setup_venv(venv: Path | None = None, python: str | None = None, quiet: bool = True) -> Path:
    """Create (or complete) the Triton virtualenv from PyPI. Idempotent; a few minutes the first time."""
    venv = venv or triton_venv_dir()
    if venv_ready(venv):
        return venv
    python = python or shutil.which("python3.11") or sys.executable
    if not _venv_python(venv).exists():
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
    pip = [str(_venv_python(venv)), "-m", "pip", "install", "--disable-pip-version-check"]
    if quiet:
        pip.append("--quiet")
    subprocess.run(pip + TRITON_VENV_REQUIREMENTS, check=True)
    (venv / ".installed").write_text(_marker())
    return venv


def _tritonserver_home(venv: Path, check: bool = True) -> Path | None:
    try:
        home = _site_packages(venv) / "pytriton" / "tritonserver"
    except PreconditionError:
        home = None
    if home is None or not (home / "bin" / "tritonserver").is_file():
        if check:
            raise PreconditionError(f"no tritonserver in {venv}: run `make triton-venv` (or "
                                    "`python -m services.triton_local setup`) to install nvidia-pytriton there")
        return None
    return home




def _python_libdir(venv: Path) -> str:
    """The Python install's lib folder; the python-backend stub needs the shared libpython from it (or the
    system's, e.g. Debian's libpython3.11 package)."""
    out = subprocess.run([str(_venv_python(venv)), "-c", "import sys, sysconfig; print(sysconfig.get_config_var("
                          "'LIBDIR')); print(f'libpython{sys.version_info[0]}.{sys.version_info[1]}.so.1.0')"],
                         check=True, capture_output=True, text=True)
    libdir, lib = out.stdout.split()
    if not (Path(libdir) / lib).exists():
        known = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout if shutil.which(
            "ldconfig") else ""
        if lib not in known:
            raise PreconditionError(f"tritonserver's python backend needs the shared {lib}: not in {libdir} nor "
                                    f"the system's libraries (Debian/Ubuntu: apt-get install {lib.split('.so')[0]})")
    return libdir


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the process that started us dies (no orphaned tritonserver if a
    test run or a benchmark is killed)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort (not Linux)
        pass


class TritonServer:
    """tritonserver from the pytriton venv as a subprocess on free loopback ports.

    ``model_control_mode="poll"`` rescans the repository every ``poll_secs`` so new exports load by
    themselves; ``"none"`` loads what is there at start. ``start()`` waits until the server is ready (every
    model loaded) or raises :class:`UnavailableError` with the end of Triton's log."""

    def __init__(self, repository: str | Path, venv: str | Path | None = None, grpc_port: int | None = None,
                 model_config_name: str | None = CPU_CONFIG_NAME, model_control_mode: str = "poll",
                 poll_secs: int = 2, log_path: str | Path | None = None, log_verbose: int = 0,
                 extra_args: list[str] | None = None):
        self.repository = Path(repository).resolve()
        self.venv = Path(venv).expanduser() if venv else triton_venv_dir()
        self.grpc_port = grpc_port or free_port()
        self.model_config_name = model_config_name
        self.model_control_mode = model_control_mode
        self.poll_secs = poll_secs
        self.log_verbose = log_verbose
        self.extra_args = list(extra_args or [])
        self.log_path = Path(log_path) if log_path else Path(tempfile.mkdtemp(prefix="iznet-triton-")) / "triton.log"
        self.proc: subprocess.Popen | None = None
        self.unavailable: list[tuple[str, str, str]] = []

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def _backends(self) -> Path:
        """pytriton ships one python-backend stub per Python version: a private backend folder with the stub
        that matches the venv's Python (what pytriton itself does at start)."""
        home = _tritonserver_home(self.venv)
        dst = self.log_path.parent / "backends"
        if not (dst / "python" / "triton_python_backend_stub").is_file():
            shutil.copytree(home / "backends", dst, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__"))
            ver = subprocess.run([str(_venv_python(self.venv)), "-c",
                                  "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')"],
                                 check=True, capture_output=True, text=True).stdout.strip()
            stub = home / "python_backend_stubs" / ver / "triton_python_backend_stub"
            if not stub.is_file():
                raise PreconditionError(f"pytriton has no python-backend stub for Python {ver} ({stub})")
            shutil.copy2(stub, dst / "python" / "triton_python_backend_stub")
        return dst

    def command(self) -> list[str]:
        home = _tritonserver_home(self.venv)
        cmd = [str(home / "bin" / "tritonserver"),
               f"--model-repository={self.repository}",
               f"--backend-directory={self._backends()}",
               f"--cache-directory={home / 'caches'}",
               "--allow-grpc=true", "--grpc-address=127.0.0.1", f"--grpc-port={self.grpc_port}",
               "--allow-http=false", "--allow-metrics=false",
               f"--model-control-mode={self.model_control_mode}",
               "--exit-on-error=false", "--strict-readiness=true",
               f"--log-verbose={self.log_verbose}"]
        if self.model_control_mode == "poll":
            cmd.append(f"--repository-poll-secs={self.poll_secs}")
        if self.model_config_name:
            cmd.append(f"--model-config-name={self.model_config_name}")
        return cmd + self.extra_args

    def environment(self) -> dict[str, str]:
        """LD_LIBRARY_PATH: the Python install's lib folder (libpython for the python backend's stub) and the
        libraries pytriton bundles; PYTHONPATH: the venv's site-packages, so model.py finds numpy and onnxruntime."""
        home = _tritonserver_home(self.venv)
        env = dict(os.environ)
        libs = [_python_libdir(self.venv), str(home.parent.parent / "nvidia_pytriton.libs")]
        env["LD_LIBRARY_PATH"] = os.pathsep.join([p for p in libs if p and Path(p).is_dir()]
                                                 + [p for p in [env.get("LD_LIBRARY_PATH", "")] if p])
        env["PYTHONPATH"] = str(_site_packages(self.venv))
        env["PATH"] = os.pathsep.join([str(self.venv / "bin"), env.get("PATH", "")])
        env.pop("PYTHONHOME", None)
        env.setdefault("OMP_NUM_THREADS", "1")
        return env

    def start(self, timeout: float = 120.0, wait_models: bool = True) -> "TritonServer":
        if self.proc is not None:
            return self
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.command(), env=self.environment(), stdout=self._log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                     preexec_fn=_die_with_parent)
        try:
            self.wait_ready(timeout, wait_models=wait_models)
        except BaseException:
            self.stop()
            raise
        return self

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_ready(self, timeout: float = 120.0, wait_models: bool = True) -> None:
        """Until Triton is live and no model is still loading. Models that failed to load do not stop the
        server (clients asking for them get UNAVAILABLE with the reason); they are listed in
        ``self.unavailable`` as (name, version, reason)."""
        import tritonclient.grpc as grpcclient

        client = grpcclient.InferenceServerClient(self.grpc_url)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise UnavailableError(f"tritonserver exited with status {self.proc.returncode}; "
                                           f"log {self.log_path}:\n{self.log_tail()}")
                try:
                    if client.is_server_live(client_timeout=2):
                        if not wait_models or client.is_server_ready(client_timeout=2):
                            self.unavailable = []
                            return
                        models = client.get_model_repository_index(as_json=True, client_timeout=2).get("models", [])
                        if not any(m.get("state") in ("LOADING", "UNLOADING") for m in models):
                            self.unavailable = [(m.get("name"), m.get("version", ""), m.get("reason", ""))
                                                for m in models if m.get("state") != "READY"]
                            return
                except Exception:  # noqa: BLE001 - not up yet
                    pass
                time.sleep(0.25)
        finally:
            client.close()
        raise UnavailableError(f"tritonserver not ready after {timeout:.0f}s; log {self.log_path}:\n{self.log_tail()}")

    def stop(self, timeout: float = 15.0) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
            except ProcessLookupError:
                pass
        if getattr(self, "_log", None):
            self._log.close()
            self._log = None
        shutil.rmtree(self.log_path.parent / "backends", ignore_errors=True)  # the stub copy; the log stays

    def __enter__(self) -> "TritonServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m services.triton_local", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("setup", help="create the Triton virtualenv from PyPI")
    s.add_argument("--venv", default=None)
    s.add_argument("--python", default=None)
    r = sub.add_parser("serve", help="serve <store>/triton until interrupted")
    r.add_argument("--store", default=None)
    r.add_argument("--repository", default=None)
    r.add_argument("--grpc-port", type=int, default=None)
    args = ap.parse_args(argv)
    if args.cmd == "setup":
        venv = setup_venv(Path(args.venv) if args.venv else None, python=args.python, quiet=False)
        print(f"Triton venv ready: {venv}")
        return 0
    from iznet.config import load_settings

    repo = Path(args.repository) if args.repository else load_settings(store=args.store).store / "triton"
    serve_forever(repo, grpc_port=args.grpc_port)
    return 0


def serve_forever(repository: Path, grpc_port: int | None = None, venv: Path | None = None,
                  model_config_name: str | None = CPU_CONFIG_NAME, echo=print) -> None:
    if not Path(repository).is_dir():
        raise PreconditionError(f"no Triton model repository at {repository}: run `iznet export` first")
    server = TritonServer(repository, venv=venv, grpc_port=grpc_port, model_config_name=model_config_name)

    def _terminate(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)  # `kill` stops tritonserver too, like Ctrl-C
    server.start()
    echo(f"Triton ready at {server.grpc_url} (gRPC, KServe v2) serving {repository}; log {server.log_path}")
    for name, version, reason in server.unavailable:
        echo(f"warning: model {name} version {version or '?'} is not loaded: {reason}")
    echo("Ctrl-C stops it")
    try:
        while server.proc is not None and server.proc.poll() is None:
            time.sleep(1)
        echo(f"tritonserver exited; log {server.log_path}")
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
