"""The ``iznet detect`` commands as a user runs them (a toy model; no shared data needed)."""

import json

import cv2
import numpy as np
import torch

from iznet.cli import main
from iznet.detection.darknet import build_model
from iznet.detection.yolo import save_detector

ANCHORS = [[[8, 9], [12, 14], [18, 20]], [[26, 30], [40, 46], [60, 70]], [[90, 100], [130, 150], [200, 220]]]


def test_run_draws_red_boxes(tmp_path, capsys):
    torch.manual_seed(0)
    model = save_detector(build_model("nano"), {"name": "toy", "size": "nano", "num_anchors": 3, "anchors": ANCHORS,
                                                "input_size": 128}, tmp_path / "toy.pt")
    img = np.full((90, 120, 3), 200, np.uint8)
    cv2.imwrite(str(tmp_path / "photo.png"), img)
    rc = main(["detect", "run", str(tmp_path / "photo.png"), "--detector", str(model), "--conf", "0.0",
               "--out-dir", str(tmp_path / "out")])
    assert rc == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[0])
    assert line["detector"] == "toy" and line["faces"]
    drawn = cv2.imread(str(tmp_path / "out" / "photo.png"))
    red = (drawn[..., 2] > 200) & (drawn[..., 1] < 60) & (drawn[..., 0] < 60)
    assert red.any()


def test_user_errors_are_one_line(tmp_path, capsys):
    cv2.imwrite(str(tmp_path / "photo.png"), np.zeros((10, 10, 3), np.uint8))
    rc = main(["detect", "run", str(tmp_path / "photo.png"), "--detector", str(tmp_path / "missing.pt")])
    assert rc == 2 and "not found" in capsys.readouterr().err
    rc = main(["detect", "eval", "--detector", "haar", "--data", str(tmp_path)])
    assert rc == 2 and "shared data" in capsys.readouterr().err
    rc = main(["detect", "train", "--out", str(tmp_path / "d.pt"), "--data", str(tmp_path / "nope")])
    assert rc == 2
