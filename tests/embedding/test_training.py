"""Training end to end on att_orl (real images, tiny networks): the dev metric rises, every (network, method)
pair trains, checkpoints resume exactly, runs are deterministic under a seed, and `iznet evaluate` reports."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from iznet.cli import main as iznet_main
from iznet.embedding.embedder import load_embedder
from iznet.imageio import read_image
from training.trainer import TrainConfig, Trainer

pytestmark = pytest.mark.shared_data


def cfg(root, pairs, out, **kw) -> TrainConfig:
    base = dict(data=str(root), out=str(out), network="small", method="softmax", input_size=32, width=0.5,
                pairs=str(pairs), exclude_folds=[1], dev_folds=[1], steps=150, eval_every=50, warmup_steps=10,
                lr=0.1, progress=False, seed=0)
    base.update(kw)
    return TrainConfig(**base)


def read_log(out):
    return [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]


def test_softmax_training_raises_dev_accuracy(orl_lfw, tmp_path):
    root, pairs = orl_lfw
    out = tmp_path / "run"
    summary = Trainer(cfg(root, pairs, out)).fit()
    evals = [r for r in read_log(out) if r["event"] == "eval"]
    first, final = evals[0]["accuracy"], summary["dev"]["accuracy"]
    assert evals[0]["step"] == 0 and summary["dev"]["identity_overlap_with_train"] == 0
    assert final >= 0.8 and final > first + 0.05, (first, final)
    assert summary["dev"]["auc"] > 0.85
    card = json.loads((out / "model.json").read_text())
    assert card["kind"] == "embedder" and card["architecture"]["name"] == "small"
    assert card["dataset"]["train_people"] == 30 and card["training"]["samples_seen"] == 150 * 32
    assert card["metrics"]["dev"]["accuracy"] == pytest.approx(final)
    # the saved embedder reproduces the training-time verification on real files
    emb = load_embedder(out)
    a = emb.embed([read_image(root / "s31" / "s31_0001.jpg"), read_image(root / "s31" / "s31_0002.jpg"),
                   read_image(root / "s40" / "s40_0001.jpg")])
    assert a.shape == (3, 128) and a.dtype == np.float32
    assert np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)
    assert emb.version["kind"] == "embedder" and emb.version["digest"].startswith("sha256:")
    assert emb.input_size == 32
    # `iznet evaluate` on the same pairs: the numbers a user reads
    report = tmp_path / "eval.json"
    assert iznet_main(["evaluate", str(out), "--pairs", str(pairs), "--data", str(root), "--json", str(report)]) == 0
    rep = json.loads(report.read_text())
    assert rep["accuracy"] >= 0.75 and rep["folds"] == 10 and 0 <= rep["tar_at_far"] <= 1
    assert rep["identification"]["rank1"] > 0.5 and rep["identification"]["gallery"] == 10


@pytest.mark.parametrize("network,method,size", [
    ("small", "triplet", 32),
    ("small", "pair", 32),
    ("hog", "triplet", 32),
    ("nn1", "triplet", 64),
    ("nn1", "pair", 64),
    ("nn1", "softmax", 64),
    ("nn2", "triplet", 64),
    ("nn2", "pair", 64),
    ("inception_v3", "triplet", 80),
    ("inception_v3", "pair", 80),
])
def test_every_network_and_method_trains_end_to_end(orl_lfw, tmp_path, network, method, size):
    root, pairs = orl_lfw
    out = tmp_path / f"{network}-{method}"
    width = 0.125 if network not in ("small", "hog") else 0.5
    c = cfg(root, pairs, out, network=network, method=method, input_size=size, width=width, steps=4,
            eval_every=0, batch_size=8, lr=0.01)
    s = Trainer(c).fit()
    assert s["step"] == 4 and np.isfinite(s["dev"]["accuracy"])
    emb = load_embedder(out)
    v = emb.embed([read_image(root / "s1" / "s1_0001.jpg")] * 2)
    assert v.shape == (2, 128) and np.allclose(v[0], v[1], atol=1e-5)


def test_triplet_and_pair_training_raise_dev_auc(orl_lfw, tmp_path):
    root, pairs = orl_lfw
    for method in ("triplet", "pair"):
        out = tmp_path / method
        s = Trainer(cfg(root, pairs, out, method=method, steps=120, eval_every=0, lr=0.05)).fit()
        first = [r for r in read_log(out) if r["event"] == "eval"][0]
        assert s["dev"]["auc"] > first["auc"] + 0.03, (method, first["auc"], s["dev"]["auc"])
        if method == "triplet":
            assert any("semihard_fraction" in r for r in read_log(out))


def test_resume_is_exact_and_seeded_runs_are_identical(orl_lfw, tmp_path):
    root, pairs = orl_lfw
    kw = dict(method="triplet", steps=12, eval_every=6, batch_size=8)
    Trainer(cfg(root, pairs, tmp_path / "a", **kw)).fit()
    Trainer(cfg(root, pairs, tmp_path / "b", **kw)).fit()
    wa = torch.load(tmp_path / "a" / "model.pt", weights_only=True)
    wb = torch.load(tmp_path / "b" / "model.pt", weights_only=True)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # stop at 6, resume to 12: the same weights as the straight run
    Trainer(cfg(root, pairs, tmp_path / "c", **{**kw, "steps": 6})).fit()
    Trainer(cfg(root, pairs, tmp_path / "c", **kw), resume=tmp_path / "c").fit()
    wc = torch.load(tmp_path / "c" / "model.pt", weights_only=True)
    assert all(torch.equal(wa[k], wc[k]) for k in wa)
    card = json.loads((tmp_path / "c" / "model.json").read_text())
    assert card["training"]["steps"] == 12
    # a different seed gives different weights
    Trainer(cfg(root, pairs, tmp_path / "d", **{**kw, "seed": 1})).fit()
    wd = torch.load(tmp_path / "d" / "model.pt", weights_only=True)
    assert not all(torch.equal(wa[k], wd[k]) for k in wa)


def test_early_stopping_and_user_errors(orl_lfw, tmp_path):
    root, pairs = orl_lfw
    # a learning rate of ~0 cannot improve: patience 1 stops at the second evaluation
    s = Trainer(cfg(root, pairs, tmp_path / "e", steps=100, eval_every=5, patience=1, lr=1e-9, warmup_steps=0)).fit()
    assert s["stop_reason"] == "early stopping" and s["step"] < 100
    assert iznet_main(["embed", "train", "--data", str(root), "--out", str(tmp_path / "x"),
                       "--network", "nope"]) == 2
    assert iznet_main(["evaluate", str(tmp_path / "e"), "--pairs", str(pairs), "--data", str(tmp_path)]) == 2


def _teacher_file(root, path):
    """A teacher's vectors for every training image and its mirror image (here the LBP baseline, which needs
    no weights), written the way ``training.chips`` writes them."""
    from iznet.registry import create_embedder

    teacher = create_embedder("baseline-lbp")
    rel = sorted(str(p.relative_to(root)) for p in root.glob("*/*.jpg"))
    imgs = [read_image(root / r) for r in rel]
    np.savez(path, paths=np.array(rel), embedding=teacher.embed(imgs),
             embedding_flip=teacher.embed([im[:, ::-1].copy() for im in imgs]),
             landmarks=np.zeros((len(rel), 5, 2), np.float32), teacher=json.dumps(teacher.version),
             chip=str(teacher.chip))
    return teacher


def test_distillation_pulls_the_student_onto_the_teacher_for_people_it_never_saw(orl_lfw, tmp_path):
    root, pairs = orl_lfw
    teacher = _teacher_file(root, tmp_path / "teacher.npz")
    out = tmp_path / "student"
    s = Trainer(cfg(root, pairs, out, method="distill", teacher=str(tmp_path / "teacher.npz"), steps=150,
                    optimizer="adamw", lr=0.003, weight_decay=0.01, eval_flip=False)).fit()
    log = read_log(out)
    cos = [r["cos"] for r in log if r["event"] == "train"]
    assert cos[-1] > cos[0] + 0.1, (cos[0], cos[-1])
    card = json.loads((out / "model.json").read_text())
    assert card["method"]["name"] == "distill" and card["teacher"]["version"]["name"] == "baseline-lbp"
    assert card["chip"] == str(teacher.chip) and card["training"]["device"] == "cpu"
    # held-out people (s31-s40, never trained on): the student's vectors point where the teacher's do
    held = [root / f"s{p}" / f"s{p}_{k:04d}.jpg" for p in range(31, 41) for k in (1, 5)]
    imgs = [read_image(h) for h in held]
    student, t = load_embedder(out).embed(imgs), teacher.embed(imgs)
    fresh = Trainer(cfg(root, pairs, tmp_path / "fresh", method="distill", teacher=str(tmp_path / "teacher.npz"),
                        steps=1, lr=1e-9, warmup_steps=0, eval_flip=False)).fit()
    untrained = load_embedder(tmp_path / "fresh").embed(imgs)
    assert (student * t).sum(1).mean() > (untrained * t).sum(1).mean() + 0.1
    assert s["dev"]["auc"] > 0.8 and fresh["dev"] is not None


def test_distillation_needs_a_teacher_for_every_chip_and_cuda_needs_a_gpu(orl_lfw, tmp_path):
    from iznet.errors import NotFoundError, PreconditionError

    root, pairs = orl_lfw
    with pytest.raises(NotFoundError, match="training.chips"):
        Trainer(cfg(root, pairs, tmp_path / "a", method="distill"))
    np.savez(tmp_path / "t.npz", paths=np.array(["s1/s1_0001.jpg"]), embedding=np.zeros((1, 128), np.float32),
             embedding_flip=np.zeros((1, 128), np.float32), landmarks=np.zeros((1, 5, 2)),
             teacher=json.dumps({"name": "x"}), chip="box:160:0.2")
    with pytest.raises(PreconditionError, match="no teacher embedding"):
        Trainer(cfg(root, pairs, tmp_path / "b", method="distill", teacher=str(tmp_path / "t.npz")))
    if not torch.cuda.is_available():
        with pytest.raises(PreconditionError, match="sees no GPU"):
            Trainer(cfg(root, pairs, tmp_path / "c", device="cuda"))
    assert iznet_main(["embed", "train", "--data", str(root), "--out", str(tmp_path / "d"),
                       "--device", "tpu"]) == 2
