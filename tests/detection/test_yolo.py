"""Inference plumbing: letterbox, batched detection, saving and loading weights + card, errors."""

import json

import cv2

import numpy as np
import pytest
import torch

from iznet.detection.darknet import build_model, count_parameters
from iznet.detection.types import Detector
from iznet.detection.yolo import YoloDetector, letterbox, load_detector, save_detector
from iznet.errors import NotFoundError, UserInputError
from iznet.registry import SHIPPED

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


def test_candidate_decoding_matches_the_full_decode():
    """Decoding only the cells above the threshold gives the rows the full grid decode keeps."""
    from iznet.detection.yolo import decode, decode_candidates

    torch.manual_seed(0)
    model = build_model("nano", num_landmarks=5).eval()
    with torch.no_grad():
        raws = model(torch.rand(2, 3, 96, 128))
    full = decode(raws, torch.as_tensor(ANCHORS, dtype=torch.float32)).numpy()
    conf = float(np.quantile(full[..., 4], 0.9))
    got = decode_candidates([r.numpy() for r in raws], ANCHORS.astype(np.float32), conf)
    for b in range(2):
        want = full[b][full[b][:, 4] >= conf]
        order_w, order_g = np.lexsort(want[:, :5].T), np.lexsort(got[b][:, :5].T)
        np.testing.assert_allclose(got[b][order_g], want[order_w], rtol=1e-4, atol=1e-3)


def test_the_onnx_engine_finds_what_torch_finds(tmp_path, monkeypatch):
    """The shipped detector through onnxruntime (exported into the cache once) gives torch's boxes."""
    monkeypatch.setenv("IZNET_CACHE", str(tmp_path))
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8), (5, 5), 0)
    on_torch = load_detector(SHIPPED / "yolo-tiny", backend="torch", conf_threshold=0.01).detect(img)
    onnx_det = load_detector(SHIPPED / "yolo-tiny", backend="onnx", conf_threshold=0.01)
    assert onnx_det.backend == "onnx" and list((tmp_path / "onnx").glob("detector-*.onnx"))
    on_onnx = onnx_det.detect(img)
    assert len(on_torch) == len(on_onnx) > 0
    for a, b in zip(on_torch, on_onnx):
        np.testing.assert_allclose([a.x1, a.y1, a.x2, a.y2, a.score], [b.x1, b.y1, b.x2, b.y2, b.score], atol=0.05)


def test_faces_bigger_than_any_training_sample_are_found(shared_data):
    """The detector learnt on 160-px samples; a portrait's face at the main input size is bigger than any of
    them, and the coarse pass finds it: LFW photos as they are and close-ups where the face fills the photo."""
    import glob

    from iznet.imageio import read_image

    det = load_detector(SHIPPED / "yolo-tiny")
    assert 0 < det.coarse_size < det.input_size
    paths = sorted(glob.glob(str(shared_data / "lfw" / "*" / "*_0001.jpg")))[:20]
    for p in paths:
        im = read_image(p)
        close_up = cv2.resize(im[50:200, 50:200], (480, 480))
        for photo, least in ((im, 70), (close_up, 200)):
            best = max(det.detect(photo), key=lambda f: f.score, default=None)
            assert best is not None and best.x2 - best.x1 > least, p
