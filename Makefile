# IZ*Net: the entry points a newcomer and CI use. Every target that needs Python sets up ./.venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
DATA   ?=
OUT    ?= demo-out

.PHONY: setup test demo protos bench deploy-local clean

setup: $(VENV)/.installed

# torch goes in first, pinned, so nothing later can pull a CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

test: setup
	$(PY) -m pytest

demo: setup
	$(PY) -m iznet demo --out $(OUT) $(if $(DATA),--data $(DATA))

protos: setup
	$(PY) -m iznet.protos_build

bench: setup
	$(PY) -m bench.run

deploy-local:
	@echo "deploy-local: the Helm chart and kind config arrive with the Kubernetes issue (deploy/)." >&2
	@exit 2

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
