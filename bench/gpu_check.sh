#!/usr/bin/env bash
# Train every embedding network and the detector a few hundred steps on this machine's GPU and print
# images/s and the loss trend (bench/gpu_check.py). Minutes on a GPU; exits 1 when a run fails or its loss
# does not fall. Extra arguments go to the Python script (e.g. --steps 100 --networks small,nn2).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
exec "$PY" -m bench.gpu_check --device "${DEVICE:-cuda}" "$@"
