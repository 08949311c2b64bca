"""A real Triton Inference Server (tritonserver 2.51 from nvidia-pytriton, its own venv, CPU, python backend over
onnxruntime) serving what `iznet export` wrote: the triton backend answers like torch, batches split and
merge, new exports are picked up by version, and a model Triton could not load is UNAVAILABLE with its reason.

The server starts once for the module. Without the Triton venv these tests fail with the command that makes
it (`make test` and .ci/run make it first)."""

from __future__ import annotations

import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest

from iznet.cli import main as iznet_main
from iznet.embedding.backends import BACKEND_ATOL, TritonEmbedder, make_backend
from iznet.errors import UnavailableError
from iznet.imageio import encode_image, write_image
from iznet.triton.repository import ServingOptions, export_to_store
from iznet.v1 import common_pb2, embedding_pb2, embedding_pb2_grpc
from services.stack import Proc
from services.triton_local import TritonServer, setup_venv

from .conftest import write_embedder

pytestmark = pytest.mark.slow
OPTS = ServingOptions(max_batch_size=8, preferred_batch_sizes=(4, 8), max_queue_delay_us=5000)


@pytest.fixture(scope="module")
def store(small_model, tmp_path_factory):
    store = tmp_path_factory.mktemp("store")
    export_to_store(small_model, store, name="faces", opts=OPTS)
    return store


@pytest.fixture(scope="module")
def triton(store):
    setup_venv()  # no-op when made (by `make triton-venv`); otherwise installs from PyPI (minutes)
    server = TritonServer(store / "triton", model_control_mode="poll", poll_secs=1)
    server.start(timeout=180)
    yield server
    server.stop()


def wait_for(pred, timeout=60.0, step=0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(step)
    return pred()


def test_triton_backend_answers_like_torch(triton, small_model, crops):
    ref = make_backend("torch", small_model)
    emb = make_backend("triton", triton_url=triton.grpc_url, triton_model="faces")
    assert isinstance(emb, TritonEmbedder) and emb.health() == (True, "ready")
    assert emb.max_batch == 8 and emb.input_size == 32 and emb.dim == 128
    got = emb.embed(crops)  # 40 crops -> 5 requests of at most max_batch_size
    want = ref.embed(crops)
    assert got.shape == (40, 128) and got.dtype == np.float32
    assert np.abs(got - want).max() <= BACKEND_ATOL
    assert emb.version == ref.version and emb.served_version == "1"
    emb.close()


def start_embedding_service(tmp_path, *args) -> Proc:
    """The embedding gRPC service as a real process (as `iznet up` and the chart run it)."""
    proc = Proc("embedding", ["-m", "services.embedding", "--host", "127.0.0.1", "--port", "0", *args],
                tmp_path / "embedding.log")
    return proc.start({**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}, timeout=120)


def embed_request(crops) -> embedding_pb2.EmbedRequest:
    return embedding_pb2.EmbedRequest(crops=[common_pb2.Image(data=encode_image(c, ".png"), id=str(i))
                                             for i, c in enumerate(crops)])


def test_embedding_service_with_triton_and_onnx_backends_answers_like_torch(triton, store, small_model, crops,
                                                                            tmp_path):
    ref = make_backend("torch", small_model)
    want = ref.embed(crops[:12])
    for args in (["--backend", "triton", "--triton-url", triton.grpc_url, "--triton-model", "faces"],
                 ["--backend", "onnx", "--store", str(store), "--model", "faces"]):
        proc = start_embedding_service(tmp_path, *args)
        try:
            stub = embedding_pb2_grpc.EmbeddingStub(grpc.insecure_channel(proc.address))
            resp = stub.Embed(embed_request(crops[:12]), timeout=60)
            got = np.array([v.values for v in resp.vectors], np.float32)
            assert got.shape == (12, 128) and np.abs(got - want).max() <= BACKEND_ATOL, args
            assert resp.model.digest == ref.version["digest"] and resp.model.name == "small-test"
            assert stub.GetModel(common_pb2.GetModelRequest(), timeout=10).digest == ref.version["digest"]
            # a gallery made with torch pins its model by digest: the remote backend satisfies the pin
            pinned = embedding_pb2.EmbedRequest(crops=embed_request(crops[:1]).crops, model_digest=ref.version["digest"])
            assert len(stub.Embed(pinned, timeout=30).vectors) == 1
        finally:
            proc.stop()


def test_concurrent_clients_are_batched_and_answered_in_order(triton, small_model, crops):
    want = make_backend("torch", small_model).embed(crops)
    emb = make_backend("triton", triton_url=triton.grpc_url, triton_model="faces")
    with ThreadPoolExecutor(8) as pool:
        parts = list(pool.map(lambda i: emb.embed(crops[i:i + 3]), range(0, 39, 3)))
    assert np.abs(np.concatenate(parts) - want[:39]).max() <= BACKEND_ATOL


def test_a_new_export_is_served_as_the_next_version(triton, store, tmp_path, crops):
    emb = make_backend("triton", triton_url=triton.grpc_url, triton_model="faces")
    before = emb.embed(crops[:4])
    assert emb.version["version"] == "s0"
    newer = write_embedder(tmp_path / "newer", seed=5, input_size=32, width=0.5)
    export_to_store(newer, store, name="faces", opts=OPTS)
    want = make_backend("torch", newer).embed(crops[:4])

    def switched():
        try:
            return emb.served_version == "2" or (emb.embed(crops[:4]) is not None and emb.served_version == "2")
        except UnavailableError:
            return False  # between unloading 1 and loading 2

    assert wait_for(switched), "Triton did not pick up version 2"
    # the same client object now answers with version 2's vectors, and says so
    got = emb.embed(crops[:4])
    assert np.abs(got - want).max() <= BACKEND_ATOL and np.abs(got - before).max() > 100 * BACKEND_ATOL
    assert emb.served_version == "2" and emb.version["version"] == "s5"
    assert emb.version == make_backend("torch", newer).version


def test_a_model_triton_could_not_load_is_unavailable_with_the_reason(triton, store, small_model, tmp_path):
    other = tmp_path / "other"
    export_to_store(small_model, other, name="broken", opts=OPTS)
    (other / "triton" / "broken" / "1" / "model.onnx").write_bytes(b"this is not an onnx file")
    # into the polled repository in one rename: Triton tries to load it and the wrapper's onnxruntime refuses
    (other / "triton" / "broken").rename(store / "triton" / "broken")  # same file system (pytest's tmp)

    def error():
        try:
            make_backend("triton", triton_url=triton.grpc_url, triton_model="broken", triton_timeout=5)
        except UnavailableError as exc:
            return exc if "UNAVAILABLE" in str(exc) or "unavailable" in str(exc).lower() else None
        return None

    exc = wait_for(error, timeout=60)
    assert exc is not None and exc.grpc_code == "UNAVAILABLE"
    assert "has not loaded model 'broken'" in str(exc) and "onnxruntime" in str(exc).lower(), str(exc)

    with pytest.raises(UnavailableError, match="no model named 'nobody'"):
        make_backend("triton", triton_url=triton.grpc_url, triton_model="nobody", triton_timeout=5)
    shutil.rmtree(store / "triton" / "broken")


def test_cli_status_and_vectors_through_triton(triton, small_model, crops, tmp_path, capsys):
    assert iznet_main(["triton", "status", "--triton-url", triton.grpc_url, "--triton-model", "faces"]) == 0
    assert "ready: faces" in capsys.readouterr().out
    paths = []
    for i, c in enumerate(crops[:2]):
        paths.append(str(tmp_path / f"f{i}.png"))
        write_image(paths[-1], c)
    out = tmp_path / "v.npy"
    assert iznet_main(["vectors", *paths, "--backend", "triton", "--triton-url", triton.grpc_url,
                       "--triton-model", "faces", "--out", str(out)]) == 0
    assert np.load(out).shape == (2, 128)


def test_a_server_that_goes_down_is_unavailable(store, crops, tmp_path):
    """Its own short-lived Triton (the module's stays up for the others), stopped under a live client and under
    the embedding service: both answer UNAVAILABLE with the reason."""
    server = TritonServer(store / "triton", model_control_mode="none")
    server.start(timeout=180)
    proc = None
    try:
        emb = make_backend("triton", triton_url=server.grpc_url, triton_model="faces", triton_timeout=5)
        assert emb.embed(crops[:2]).shape == (2, 128)
        proc = start_embedding_service(tmp_path, "--backend", "triton", "--triton-url", server.grpc_url,
                                       "--triton-model", "faces", "--triton-timeout", "5")
        stub = embedding_pb2_grpc.EmbeddingStub(grpc.insecure_channel(proc.address))
        assert len(stub.Embed(embed_request(crops[:2]), timeout=30).vectors) == 2
        server.stop()
        with pytest.raises(UnavailableError, match="unreachable") as info:
            emb.embed(crops[:2])
        assert info.value.grpc_code == "UNAVAILABLE"
        with pytest.raises(grpc.RpcError) as rpc:
            stub.Embed(embed_request(crops[:2]), timeout=30)
        assert rpc.value.code() == grpc.StatusCode.UNAVAILABLE
        # The reason, without the internal address (the service keeps those to its log).
        assert "Triton at <address> is unreachable" in rpc.value.details()
        assert server.grpc_url not in rpc.value.details()
    finally:
        server.stop()
        if proc:
            proc.stop()



def test_the_imported_dlib_resnet_is_served_by_triton_like_torch(triton, store):
    """dlib's ResNet, ported here, goes through `iznet export` and Triton like any trained model."""
    from iznet.embedding.onnx_export import sample_crops
    from iznet.registry import create_embedder

    torch_emb = create_embedder("dlib-resnet", threads=1)
    report = export_to_store("dlib-resnet", store, name="dlib", opts=OPTS)
    assert report["check"]["max_abs_diff"] <= BACKEND_ATOL
    chips = list(sample_crops(3, 150, seed=5))

    def served():
        try:
            return make_backend("triton", triton_url=triton.grpc_url, triton_model="dlib")
        except UnavailableError:
            return None

    remote = wait_for(served, timeout=90)
    assert remote is not None, "Triton did not load the exported dlib-resnet"
    assert remote.version["digest"] == torch_emb.version["digest"] and str(remote.chip) == "dlib:150:0.25"
    np.testing.assert_allclose(remote.embed(chips), torch_emb.embed(chips), atol=BACKEND_ATOL)
    onnx_emb = create_embedder("dlib-resnet", backend="onnx", threads=1)
    np.testing.assert_allclose(onnx_emb.embed(chips), torch_emb.embed(chips), atol=BACKEND_ATOL)
    remote.close()
