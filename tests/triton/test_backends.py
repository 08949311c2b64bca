"""Backend selection in the core: torch and onnx give the same vectors and the same model version; the choice
comes from arguments or the environment; a Triton that is not there is UNAVAILABLE with the reason."""

from __future__ import annotations

import time

import numpy as np
import pytest

from iznet.cli import main as iznet_main
from iznet.embedding.backends import BACKEND_ATOL, OnnxEmbedder, make_backend
from iznet.errors import NotFoundError, UnavailableError, UserInputError
from iznet.imageio import write_image
from iznet.triton.repository import export_to_store
from iznet.ports import free_port


@pytest.fixture(scope="module")
def exported(small_model, tmp_path_factory):
    store = tmp_path_factory.mktemp("store")
    export_to_store(small_model, store, name="faces")
    return store


def test_torch_and_onnx_agree(small_model, exported, crops):
    torch_emb = make_backend("torch", small_model)
    onnx_emb = make_backend("onnx", exported / "triton" / "faces")  # the CURRENT version
    a, b = torch_emb.embed(crops), onnx_emb.embed(crops)
    assert a.shape == b.shape == (len(crops), 128) and b.dtype == np.float32
    assert np.abs(a - b).max() <= BACKEND_ATOL
    assert onnx_emb.version == torch_emb.version  # same digest: galleries stay valid across backends
    assert (torch_emb.backend, onnx_emb.backend) == ("torch", "onnx")
    assert np.isclose(np.linalg.norm(b, axis=1), 1, atol=1e-5).all()
    assert np.abs(b[0] - b[2]).max() > 100 * BACKEND_ATOL  # different faces, different vectors
    assert make_backend("onnx", exported / "triton" / "faces" / "1" / "model.onnx").embed([]).shape == (0, 128)


def test_backend_comes_from_the_environment(small_model, exported, crops, monkeypatch):
    monkeypatch.setenv("IZNET_EMBED_BACKEND", "onnx")
    monkeypatch.setenv("IZNET_EMBED_MODEL", str(exported / "triton" / "faces" / "1"))
    emb = make_backend()
    assert isinstance(emb, OnnxEmbedder)
    # an argument wins over the environment
    assert make_backend("torch", small_model).backend == "torch"
    monkeypatch.setenv("IZNET_EMBED_BACKEND", "tensorflow")
    with pytest.raises(UserInputError, match="unknown embedding backend 'tensorflow'"):
        make_backend()


def test_clear_errors_for_wrong_models(small_model, exported):
    with pytest.raises(NotFoundError, match="run `iznet export` first"):
        make_backend("onnx", small_model)
    with pytest.raises(UserInputError, match="needs a model"):
        make_backend("torch", None)
    with pytest.raises(UserInputError, match="flip_tta=True; re-export"):
        make_backend("onnx", exported / "triton" / "faces", flip_tta=False)


def test_triton_that_is_down_is_unavailable_with_the_reason():
    port = free_port()  # nothing listens here
    t0 = time.monotonic()
    with pytest.raises(UnavailableError) as info:
        make_backend("triton", triton_url=f"127.0.0.1:{port}", triton_timeout=2)
    assert info.value.grpc_code == "UNAVAILABLE"
    assert f"127.0.0.1:{port} is unreachable" in str(info.value)
    assert time.monotonic() - t0 < 20


def test_cli_vectors_with_torch_and_onnx(small_model, exported, crops, tmp_path, capsys):
    paths = []
    for i, c in enumerate(crops[:3]):
        paths.append(str(tmp_path / f"f{i}.png"))
        write_image(paths[-1], c)
    outs = {}
    for backend, model in (("torch", small_model), ("onnx", exported / "triton" / "faces")):
        out = tmp_path / f"{backend}.npy"
        assert iznet_main(["vectors", *paths, "--backend", backend, "--model", str(model), "--out", str(out)]) == 0
        assert f'"backend": "{backend}"' in capsys.readouterr().out
        outs[backend] = np.load(out)
    assert np.abs(outs["torch"] - outs["onnx"]).max() <= BACKEND_ATOL
    assert iznet_main(["triton", "status", "--triton-url", f"127.0.0.1:{free_port()}"]) == 2
    assert "unreachable" in capsys.readouterr().err
