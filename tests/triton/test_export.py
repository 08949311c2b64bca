"""`iznet export`: ONNX with a dynamic batch axis that reproduces torch, a versioned Triton repository whose
configs Triton's own protobuf schema accepts, and clear refusals."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from iznet.cli import main as iznet_main
from iznet.embedding.embedder import load_embedder
from iznet.embedding.networks import NETWORKS
from iznet.embedding.onnx_export import EXPORT_ATOL, EmbedderGraph, export_onnx, sample_crops
from iznet.errors import PreconditionError
from iznet.triton.repository import ServingOptions, export_to_store

from .conftest import write_embedder


def parse_config(path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def test_export_publishes_versions_with_both_configs(small_model, tmp_path):
    store = tmp_path / "store"
    opts = ServingOptions(max_batch_size=16, preferred_batch_sizes=(4, 8), gpu_instances=2, cpu_instances=1)
    r1 = export_to_store(small_model, store, name="faces", opts=opts)
    r2 = export_to_store(small_model, store, name="faces", opts=opts)
    mdir = store / "triton" / "faces"
    assert (r1["version"], r2["version"]) == (1, 2)
    assert (mdir / "CURRENT").read_text().strip() == "2"
    for v in (1, 2):
        assert {p.name for p in (mdir / str(v)).iterdir()} == {"model.onnx", "model.py", "export.json"}
    assert not list(mdir.glob(".staging-*"))

    gpu = parse_config(mdir / "config.pbtxt")
    cpu = parse_config(mdir / "configs" / "python_cpu.pbtxt")
    onnx_cpu = parse_config(mdir / "configs" / "onnx_cpu.pbtxt")
    for cfg in (gpu, cpu, onnx_cpu):
        assert cfg.name == "faces" and cfg.max_batch_size == 16
        assert list(cfg.version_policy.specific.versions) == [2]
        assert list(cfg.dynamic_batching.preferred_batch_size) == [4, 8, 16]
        assert cfg.input[0].name == "crops" and cfg.input[0].data_type == model_config_pb2.TYPE_UINT8
        assert list(cfg.input[0].dims) == [32, 32, 3]
        assert cfg.output[0].name == "embedding" and list(cfg.output[0].dims) == [128]
        card = json.loads(cfg.parameters["iznet_card"].string_value)
        assert card["version"] == load_embedder(small_model).version and card["input_size"] == 32
    assert gpu.backend == "onnxruntime" and cpu.backend == "python"
    assert gpu.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    assert gpu.instance_group[0].count == 2
    assert cpu.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    assert onnx_cpu.backend == "onnxruntime"
    assert onnx_cpu.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU

    report = json.loads((mdir / "2" / "export.json").read_text())
    assert report["check"]["ok"] and report["check"]["max_abs_diff"] <= EXPORT_ATOL
    assert {b["batch"] for b in report["check"]["batches"]} == {1, 2, 7}


def test_onnx_batch_axis_is_dynamic_and_matches_torch(small_model, tmp_path):
    emb = load_embedder(small_model)
    path = tmp_path / "m.onnx"
    export_onnx(emb, path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].shape[0] not in (1, 2) and sess.get_inputs()[0].type == "tensor(uint8)"
    graph = EmbedderGraph(emb.model, emb.preprocess, emb.flip_tta)
    for n in (1, 3, 40):
        x = sample_crops(n, 32, seed=n)
        got = sess.run(["embedding"], {"crops": x})[0]
        with torch.inference_mode():
            ref = graph(torch.from_numpy(x)).numpy()
        assert got.shape == (n, 128)
        assert np.abs(got - ref).max() <= EXPORT_ATOL
        assert np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)
    meta = json.loads(sess.get_modelmeta().custom_metadata_map["iznet_card"])
    assert meta["version"]["digest"] == emb.version["digest"] and meta["flip_tta"] is True


# Every registered network, small: the big nets' maxout, L2 pooling and inception blocks, the HOG and LBP
# features (with flat patches, where the gradient is zero) must all export.
TINY = {
    "small": dict(input_size=32, width=0.25),
    "hog": dict(input_size=32),
    "hog_lbp": dict(input_size=32),
    "nn1": dict(input_size=64, width=0.125, fc_width=64),
    "nn2": dict(input_size=64, width=0.125),
    "inception_v3": dict(input_size=75, width=0.125),
    "mobilefacenet": dict(input_size=48, width=0.25),
}


def test_the_export_test_covers_every_registered_network():
    assert sorted(TINY) == sorted(NETWORKS)


@pytest.mark.parametrize("network", sorted(TINY))
def test_every_network_exports_within_tolerance(network, tmp_path):
    emb = load_embedder(write_embedder(tmp_path / network, network=network, flip_tta=False, **TINY[network]))
    path = tmp_path / f"{network}.onnx"
    report = export_onnx(emb, path)
    assert report["check"]["max_abs_diff"] <= EXPORT_ATOL
    size = TINY[network]["input_size"]
    crops = sample_crops(3, size, seed=5)
    crops[0] = 128  # a flat grey crop: no gradient anywhere
    crops[1, : size // 2] = 30  # half flat
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["embedding"], {"crops": crops})[0]
    with torch.inference_mode():
        ref = EmbedderGraph(emb.model, emb.preprocess, emb.flip_tta)(torch.from_numpy(crops)).numpy()
    assert np.isfinite(got).all() and np.abs(got - ref).max() <= EXPORT_ATOL


def test_export_refuses_a_failed_check_and_publishes_nothing(small_model, tmp_path):
    store = tmp_path / "store"
    with pytest.raises(PreconditionError, match="differs from torch"):
        export_to_store(small_model, store, name="faces", atol=-1.0)  # no export can pass a negative bound
    mdir = store / "triton" / "faces"
    assert not (mdir / "CURRENT").exists() and not list(mdir.iterdir())


def test_export_refuses_another_input_size_under_the_same_name(small_model, tmp_path):
    store = tmp_path / "store"
    export_to_store(small_model, store, name="faces")
    other = write_embedder(tmp_path / "m48", input_size=48, width=0.5)
    with pytest.raises(PreconditionError, match="another --name"):
        export_to_store(other, store, name="faces")
    assert export_to_store(other, store, name="faces48")["version"] == 1


def test_cli_export_and_its_errors(small_model, tmp_path, capsys):
    store = tmp_path / "store"
    assert iznet_main(["export", str(small_model), "--store", str(store), "--name", "e", "--max-batch-size",
                       "8", "--preferred-batch-sizes", "2,4"]) == 0
    out = capsys.readouterr().out
    assert "version 1" in out and "max |diff|" in out and "python_cpu" in out
    assert parse_config(store / "triton" / "e" / "config.pbtxt").max_batch_size == 8
    # not a model: one clear line, exit 2
    assert iznet_main(["export", str(tmp_path), "--store", str(store)]) == 2
    assert "no embedder" in capsys.readouterr().err
    assert iznet_main(["export", str(small_model), "--store", str(store), "--name", "../x"]) == 2
    assert "bad Triton model name" in capsys.readouterr().err


def test_activate_serves_an_earlier_version_again(small_model, tmp_path, capsys):
    store = tmp_path / "store"
    opts = ServingOptions(max_batch_size=16, preferred_batch_sizes=(4,))
    export_to_store(small_model, store, name="faces", opts=opts)
    export_to_store(small_model, store, name="faces", opts=opts)
    mdir = store / "triton" / "faces"
    assert iznet_main(["triton", "activate", "faces", "1", "--store", str(store)]) == 0
    assert (mdir / "CURRENT").read_text().strip() == "1"
    for cfg in (parse_config(mdir / "config.pbtxt"), parse_config(mdir / "configs" / "python_cpu.pbtxt")):
        assert list(cfg.version_policy.specific.versions) == [1]
        assert cfg.max_batch_size == 16 and list(cfg.dynamic_batching.preferred_batch_size) == [4, 16]
    assert iznet_main(["triton", "activate", "faces", "9", "--store", str(store)]) == 2
    assert "no such exported version" in capsys.readouterr().err
