"""The core library stands alone: importing every module of ``iznet`` (but the CLI, the application layer)
loads neither the trainers (``training``) nor the servers (``services``)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import iznet

ROOT = Path(__file__).resolve().parents[1]
#: Entry points, and the model file Triton's python backend loads (it imports Triton's own module).
EXCLUDED = {"iznet.__main__", "iznet.triton.python_backend_model"}


def test_the_core_imports_neither_training_nor_services():
    core = sorted(m.name for m in pkgutil.walk_packages(iznet.__path__, "iznet.")
                  if not m.name.startswith("iznet.cli") and m.name not in EXCLUDED)
    assert "iznet.pipeline" in core and "iznet.registry" in core and "iznet.wire" in core
    code = ("import importlib, sys\n"
            f"for m in {core!r}:\n    importlib.import_module(m)\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('training', 'services'))\n"
            "print(bad)\nsys.exit(1 if bad else 0)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"the core pulled in {proc.stdout.strip()} {proc.stderr[-2000:]}"


def test_the_gateway_logic_is_importable_without_ray():
    code = ("import sys\nimport services.gateway as g\nassert g.GatewayCore\n"
            "print('ray' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "False"
