# IZ*Net: the entry points a newcomer and CI use. Every target that needs Python sets up ./.venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
DATA   ?=
OUT    ?= demo-out

.PHONY: setup triton-venv test demo protos bench deploy-local clean

setup: $(VENV)/.installed

# torch goes in first, pinned, so nothing later can pull a CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

# nvidia-pytriton's CPU tritonserver wants numpy<2: its own venv, from PyPI (tests/triton and bench use it).
TRITON_VENV ?= .venv-triton
triton-venv: $(TRITON_VENV)/.installed

$(TRITON_VENV)/.installed: services/triton_local.py | setup
	IZNET_TRITON_VENV=$(TRITON_VENV) $(PY) -m services.triton_local setup --venv $(TRITON_VENV)

test: setup triton-venv
	$(PY) -m pytest

demo: setup
	$(PY) -m iznet demo --out $(OUT) $(if $(DATA),--data $(DATA))

protos: setup
	$(PY) -m iznet.protos_build

bench: setup triton-venv
	$(PY) -m bench.run

deploy-local:
	@echo "deploy-local: the Helm chart and kind config arrive with the Kubernetes issue (deploy/)." >&2
	@exit 2

clean:
	rm -rf $(VENV) $(TRITON_VENV) .pytest_cache build *.egg-info
