"""Inference plumbing: letterbox, batched detection, saving and loading weights + card, errors."""

import json

import numpy as np
import pytest
import torch

from iznet.detection.darknet import build_model, count_parameters
from iznet.detection.types import Detector
from iznet.detection.yolo import YoloDetector, letterbox, load_detector, save_detector
from iznet.errors import NotFoundError, UserInputError

ANCHORS = np.array([[[8, 9], [12, 14], [18, 20]], [[26, 30], [40, 46], [60, 70]], [[90, 100], [130, 150], [200, 220]]])


def test_letterbox_maps_boxes_back():
    img = np.zeros((100, 300, 3), np.uint8)
    canvas, lb = letterbox(img, 640)
    assert canvas.shape == (224, 640, 3)  # 640 x 213.3 -> padded to a multiple of 32
    box = np.array([30.0, 10.0, 60.0, 50.0])
    in_canvas = box * lb.scale + np.array([lb.pad_x, lb.pad_y, lb.pad_x, lb.pad_y])
    np.testing.assert_allclose(lb.to_image(in_canvas), box, atol=1e-4)
    square, lb2 = letterbox(img, (320, 320))
    assert square.shape == (320, 320, 3) and lb2.pad_y > 0
    with pytest.raises(UserInputError):
        letterbox(img, (300, 320))


def test_model_sizes_and_output_shapes():
    m = build_model("nano")
    outs = m(torch.zeros(2, 3, 96, 128))
    assert [tuple(o.shape) for o in outs] == [(2, 3, 12, 16, 5), (2, 3, 6, 8, 5), (2, 3, 3, 4, 5)]
    assert count_parameters(build_model("cpu")) > 5 * count_parameters(m)
    with pytest.raises(UserInputError):
        build_model("huge")


def test_save_load_and_batched_detection_agree(tmp_path):
    torch.manual_seed(0)
    model = build_model("nano")
    path = save_detector(model, {"name": "toy", "size": "nano", "num_anchors": 3, "anchors": ANCHORS.tolist(),
                                 "input_size": 160, "conf_threshold": 0.0}, tmp_path / "toy.pt")
    det = load_detector(path)
    assert isinstance(det, Detector) and det.name == "toy" and det.input_size == 160
    again = load_detector(tmp_path / "toy.json", conf_threshold=0.5)
    assert again.conf_threshold == 0.5
    rng = np.random.default_rng(0)
    a = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    b = rng.integers(0, 255, (160, 120, 3), dtype=np.uint8)
    single = [det.detect(a), det.detect(b)]
    batched = det.detect_batch([a, b])
    for s, bt in zip(single, batched):
        top_s = sorted(f.score for f in s)[-5:]
        top_b = sorted(f.score for f in bt)[-5:]
        np.testing.assert_allclose(top_s, top_b, atol=0.05)
    assert det.detect_batch([]) == []


def test_bad_inputs_and_missing_files(tmp_path):
    det = YoloDetector(build_model("nano"), ANCHORS, input_size=64)
    with pytest.raises(UserInputError):
        det.detect(np.zeros((10, 10), np.uint8))
    with pytest.raises(NotFoundError):
        load_detector(tmp_path / "nothing.pt")
    (tmp_path / "x.pt").write_bytes(b"not a checkpoint")
    (tmp_path / "x.json").write_text(json.dumps({"format": "iznet-yolo-face/1", "size": "nano", "num_anchors": 3,
                                                 "anchors": ANCHORS.tolist()}))
    with pytest.raises(UserInputError):
        load_detector(tmp_path / "x.pt")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(UserInputError):
        load_detector(tmp_path / "x.pt")
