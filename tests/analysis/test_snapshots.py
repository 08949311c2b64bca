"""Snapshots during training: taken at the chosen sample counts only, clusters visibly forming."""

from __future__ import annotations

import json

import numpy as np

from tests.analysis.conftest import random_centres, unit
from training.analysis import SnapshotRecorder


def test_snapshots_at_chosen_counts_show_clusters_forming(tmp_path):
    rng = np.random.default_rng(0)
    people, per = 4, 15
    labels = np.repeat([f"p{k}" for k in range(people)], per)
    centres = np.repeat(random_centres(people, seed=2), per, axis=0)
    start = unit(rng.normal(size=(people * per, 128)))
    calls = []

    def embed_at(progress: float):
        def embed():
            calls.append(progress)
            return unit((1 - progress) * start + progress * centres)
        return embed

    rec = SnapshotRecorder(at=[0, 800, 1600], out_dir=tmp_path / "snaps", labels=labels, perplexity=10,
                           iterations=250)
    batch, seen = 96, 0
    for step in range(21):  # a pretend training loop: 96 samples a step
        rec.maybe_snapshot(seen, embed_at(min(1.0, seen / 1600)))
        seen += batch
    index = rec.finish()
    # 0, then the first step past 800 (864), then past 1600 (1632); embed_fn called only then
    assert [s.samples for s in rec.history] == [0, 864, 1632]
    assert len(calls) == 3
    acc = [s.summary["nearest_medoid_accuracy"] for s in rec.history]
    intra = [s.summary["median_intra"] for s in rec.history]
    assert acc[-1] == 1.0 and acc[0] < acc[-1]
    assert intra[0] > intra[1] > intra[2]
    out = tmp_path / "snaps"
    assert index == out / "index.html" and (out / "sequence.png").is_file() and (out / "progress.png").is_file()
    for s in rec.history:
        assert (s.folder / "tsne.png").is_file() and (s.folder / "medoids.png").is_file()
    hist = json.loads((out / "history.json").read_text())
    assert [h["samples"] for h in hist] == [0, 864, 1632]
    assert not rec.due(10_000)


def test_every_n_samples_and_no_snapshot_means_no_files(tmp_path):
    labels = np.repeat(["a", "b"], 6)
    rec = SnapshotRecorder(every=500, out_dir=tmp_path / "s", labels=labels, iterations=250)
    assert rec.finish() is None and not (tmp_path / "s").exists()
    assert rec.due(0)
    x = unit(np.random.default_rng(1).normal(size=(12, 16)))
    rec.maybe_snapshot(0, lambda: x)
    assert not rec.due(499) and rec.due(500)
    rec.maybe_snapshot(1200, lambda: x)
    assert [s.samples for s in rec.history] == [0, 1200]
    assert not rec.due(1499) and rec.due(1500)


def test_align_undoes_a_rotation_and_reflection():
    from training.analysis.snapshots import align

    pts = np.random.default_rng(3).normal(size=(30, 2)).astype(np.float32)
    th = 1.1
    turned = pts @ np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]]) @ np.diag([1, -1])
    back = align(turned.astype(np.float32), pts)
    assert np.allclose(back, pts - pts.mean(0), atol=1e-4)
