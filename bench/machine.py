"""The machine a benchmark ran on: CPU model, cores, memory, OS, Python and the versions of the libraries the
numbers depend on. Read from /proc and the installed packages' metadata (importing torch or ray just to ask
their version would cost seconds and memory in the runner)."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

#: Distributions whose versions decide the numbers (PyPI names).
PACKAGES = ("torch", "faiss-cpu", "onnxruntime", "ray", "grpcio", "opencv-python-headless", "numpy",
            "scikit-learn", "celery", "tritonclient")


def _proc_field(path: str, key: str) -> str | None:
    try:
        for line in Path(path).read_text().splitlines():
            if line.split(":", 1)[0].strip() == key:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    return _proc_field("/proc/cpuinfo", "model name") or platform.processor() or platform.machine()


def ram_gib() -> float | None:
    kb = _proc_field("/proc/meminfo", "MemTotal")
    return round(int(kb.split()[0]) / 2**20, 1) if kb else None


def os_name() -> str:
    try:
        pretty = next((line.split("=", 1)[1].strip().strip('"') for line in Path("/etc/os-release").read_text()
                       .splitlines() if line.startswith("PRETTY_NAME=")), None)
    except OSError:
        pretty = None
    release = f"{platform.system()} {platform.release()}"
    return f"{pretty} ({release})" if pretty else release


def versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def describe() -> dict[str, Any]:
    cores = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    return {"cpu": cpu_model(), "cores": cores, "usable_cores": usable, "ram_gib": ram_gib(), "os": os_name(),
            "arch": platform.machine(), "python": platform.python_version(), "versions": versions(),
            "hostname": platform.node()}
