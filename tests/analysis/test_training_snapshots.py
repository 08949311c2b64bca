"""Snapshots taken by a real training run (`iznet embed train --snapshot-at`), on generated people."""

from __future__ import annotations

import json

import pytest

from iznet.cli import main
from iznet.synthetic import make_people


@pytest.mark.slow  # a real training run
def test_embed_train_takes_snapshots_at_the_chosen_sample_counts(tmp_path, capsys):
    make_people(tmp_path / "people", people=4, photos=8, seed=3, size=64)
    out = tmp_path / "run"
    rc = main(["embed", "train", "--data", str(tmp_path / "people"), "--out", str(out), "--network", "small",
               "--method", "softmax", "--input-size", "32", "--width", "0.25", "--steps", "6", "--batch-size", "8",
               "--warmup-steps", "1", "--eval-every", "0", "--no-progress", "--threads", "1",
               "--snapshot-at", "0,16,40"])
    assert rc == 0, capsys.readouterr().err
    snaps = out / "snapshots"
    hist = json.loads((snaps / "history.json").read_text())
    assert [h["samples"] for h in hist] == [0, 16, 40]  # 8 samples a step: exactly on the counts
    assert (snaps / "sequence.png").is_file() and (snaps / "index.html").is_file()
    assert (snaps / "samples_000000016" / "tsne.png").is_file()
    assert all(h["summary"]["faces"] == 32 and h["summary"]["people"] == 4 for h in hist)
    assert (out / "model.json").is_file()  # training itself finished as usual
