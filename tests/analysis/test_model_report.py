"""`iznet analyze --model M --data DIR`: a real (untrained) network embeds real image files end to end."""

from __future__ import annotations

import json

import numpy as np
import torch

from iznet.cli import main
from iznet.embedding.networks import create_network
from iznet.synthetic import make_people


def _untrained_model(path) -> None:
    torch.manual_seed(0)
    net = create_network("small", 128, input_size=32, width=0.25)
    path.mkdir(parents=True)
    torch.save(net.state_dict(), path / "model.pt")
    card = {"kind": "embedder", "name": "untrained-small", "version": "0", "architecture": net.arch,
            "preprocess": {"input_size": 32, "crop_fraction": 1.0, "flip_tta": False}}
    (path / "model.json").write_text(json.dumps(card))


def test_analyze_a_model_on_a_folder_of_people(tmp_path, capsys):
    make_people(tmp_path / "people", people=4, photos=8, seed=2, size=64)
    _untrained_model(tmp_path / "model")
    out = tmp_path / "report"
    rc = main(["analyze", "--model", str(tmp_path / "model"), "--data", str(tmp_path / "people"), "--people", "3",
               "--out", str(out), "--tsne-perplexity", "5", "--tsne-iter", "250", "--quiet"])
    assert rc == 0, capsys.readouterr().err
    page = (out / "index.html").read_text()
    assert "untrained-small" in page and "<img class='face'" in page  # the card, and each medoid's face
    z = np.load(out / "embeddings.npz")
    assert z["embeddings"].shape == (24, 128) and len(set(z["labels"].tolist())) == 3
    assert np.allclose(np.linalg.norm(z["embeddings"], axis=1), 1, atol=1e-4)
    rec = json.loads((out / "result.json").read_text())
    assert rec["source"]["model"] == str(tmp_path / "model") and rec["summary"]["faces"] == 24
    v = rec["verification"]
    assert v["available"] and 0.0 <= v["auc"] <= 1.0 and v["same_pairs"] == v["different_pairs"] > 0
    assert len(list((out / "faces").glob("*.jpg"))) == 3
