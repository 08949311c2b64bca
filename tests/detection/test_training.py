"""A tiny training run: the loss falls, the trainer writes weights + card, the detector loads and runs."""

import json

import numpy as np
import pytest
import torch

from iznet.detection.darknet import build_model
from iznet.detection.types import Detector
from iznet.detection.yolo import load_detector, to_tensor
from training.detection.data import SampleSource, list_backgrounds, photos_from_pseudo_labels
from training.detection.targets import YoloLoss
from training.detection.train import TrainConfig, fit_anchors, train, state_path


def _source(toy, size=96):
    photos = photos_from_pseudo_labels(toy / "labels.json", toy / "photos")
    return SampleSource(photos, list_backgrounds(toy / "scenes"), size=size)


def test_samples_have_boxes_inside_the_canvas(toy_photos):
    src = _source(toy_photos, 128)
    rng = np.random.default_rng(0)
    n_faces = 0
    for _ in range(30):
        img, boxes = src.sample(rng)
        assert img.shape == (128, 128, 3) and img.dtype == np.uint8
        assert boxes.shape[1] == 14 and np.isnan(boxes[:, 4:]).all()  # boxes only: no landmarks
        boxes = boxes[:, :4]
        assert (boxes >= -1e-3).all() and (boxes <= 128 + 1e-3).all()
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        n_faces += len(boxes)
    assert n_faces > 30


def _fit_one_batch(src: SampleSource, num_landmarks: int = 0, steps: int = 40) -> list[tuple[float, dict]]:
    """``steps`` AdamW steps of a nano detector on one batch of 8 samples: (loss, loss parts) per step."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    batch = [src.sample(rng) for _ in range(8)]
    x = to_tensor([b[0] for b in batch])
    gt = [torch.from_numpy(b[1]) for b in batch]
    anchors, _ = fit_anchors(src, 9, n_samples=40)
    model = build_model("nano", num_landmarks=num_landmarks)
    crit = YoloLoss(torch.from_numpy(anchors).view(3, 3, 2))
    opt = torch.optim.AdamW(model.parameters(), 5e-3)
    out = []
    for _ in range(steps):
        loss, parts = crit(model(x), gt)
        opt.zero_grad()
        loss.backward()
        opt.step()
        out.append((float(loss), parts))
    return out


@pytest.mark.slow  # a real training run
def test_tiny_training_loss_falls(toy_photos):
    losses = [loss for loss, _ in _fit_one_batch(_source(toy_photos))]
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5]), losses


def test_trainer_writes_a_loadable_detector(toy_photos, tmp_path):
    out = tmp_path / "det.pt"
    cfg = TrainConfig(
        out=out, size="nano", img_size=96, batch=4, steps=4, warmup=2, workers=0, input_size=128,
        sources={"pseudo": [{"root": str(toy_photos / "photos"), "labels": str(toy_photos / "labels.json")}],
                 "backgrounds": str(toy_photos / "scenes")},
    )
    path = train(cfg, progress=False)
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["train"]["steps_done"] == 4 and card["train"]["finished"] is True
    assert np.asarray(card["anchors"]).shape == (3, 3, 2)
    log = [json.loads(line) for line in out.with_suffix(".log.jsonl").read_text().splitlines()]
    assert log and log[0]["step"] == 1
    det = load_detector(path, conf_threshold=0.0)
    assert isinstance(det, Detector)
    faces = det.detect(np.zeros((90, 130, 3), np.uint8))
    assert all(0 <= f.x1 < f.x2 <= 130 and 0 <= f.y1 < f.y2 <= 90 for f in faces)
    # continuing from the saved detector keeps its anchors
    cont = train(TrainConfig(**{**cfg.__dict__, "out": tmp_path / "cont.pt", "steps": 2, "init": str(path)}),
                 progress=False)
    assert json.loads(cont.with_suffix(".json").read_text())["anchors"] == card["anchors"]


def test_a_stopped_detector_run_resumes_where_it_stopped(toy_photos, tmp_path):
    """A killed training job starts again with the same ``out``: it continues from the saved step (schedule,
    optimiser and EMA included), not from step 0; ``resume=False`` starts over."""
    out = tmp_path / "det.pt"
    base = dict(out=out, size="nano", img_size=96, batch=4, warmup=2, workers=0, input_size=128, log_every=1,
                sources={"pseudo": [{"root": str(toy_photos / "photos"), "labels": str(toy_photos / "labels.json")}],
                         "backgrounds": str(toy_photos / "scenes")})
    train(TrainConfig(**base, steps=3), progress=False)
    assert state_path(out).is_file()
    first = torch.load(state_path(out), weights_only=True)
    assert first["step"] == 3
    # the same run with a larger budget: 3 more steps, not 6
    path = train(TrainConfig(**base, steps=6), progress=False)
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["train"]["steps_done"] == 6 and card["train"]["resumed_at_steps"] == [3]
    steps = [json.loads(x)["step"] for x in out.with_suffix(".log.jsonl").read_text().splitlines()]
    assert steps[0] == 1 and 4 in steps and steps.count(1) == 1  # one log, appended
    assert card["train"]["device"] == "cpu"
    again = train(TrainConfig(**base, steps=2, resume=False), progress=False)
    assert json.loads(again.with_suffix(".json").read_text())["train"]["steps_done"] == 2


def test_landmarks_move_with_their_faces_through_every_sample_kind(toy_photos):
    """Composites, mosaics, photos and mirror images keep each face's five points on its eyes, nose and mouth:
    checked against where the cartoon's eyes are drawn (darkest pixels) and the geometry of the box."""
    photos = photos_from_pseudo_labels(toy_photos / "labels_landmarks.json", toy_photos / "photos")
    assert all(p.has_landmarks for p in photos)
    src = SampleSource(photos, list_backgrounds(toy_photos / "scenes"), size=128, gray_p=0.0)
    rng = np.random.default_rng(1)
    checked = 0
    for _ in range(40):
        img, rows = src.sample(rng)
        for r in rows:
            w = r[2] - r[0]
            lm = r[4:].reshape(5, 2)
            if not np.isfinite(lm).all() or w < 20:
                continue
            # inside the box, the left eye left of the right eye, the mouth below the eyes, the nose between
            assert (lm[:, 0] > r[0] - 1).all() and (lm[:, 0] < r[2] + 1).all()
            assert lm[0, 0] < lm[1, 0] and lm[3, 0] < lm[4, 0] and lm[3, 1] > lm[0, 1]
            assert abs(lm[2, 0] - (r[0] + r[2]) / 2) < 0.05 * w + 1
            assert abs((lm[1, 0] - lm[0, 0]) - 0.4 * w) < 0.05 * w + 1  # eyes 2/5 of the width apart
            eye = img[int(round(lm[0, 1])), int(round(lm[0, 0]))].astype(int)
            assert eye.sum() < 3 * 110, eye  # on a dark eye (HSV/brightness jitter allowed)
            checked += 1
    assert checked > 10


def test_a_landmark_head_learns_the_points(toy_photos, tmp_path):
    """Trained on labels with landmarks the detector gets a 5-point head (card: num_landmarks 5); the
    landmark loss falls, and the saved detector returns five points per face."""
    photos = photos_from_pseudo_labels(toy_photos / "labels_landmarks.json", toy_photos / "photos")
    src = SampleSource(photos, list_backgrounds(toy_photos / "scenes"), size=96)
    lm = [parts["landmarks"] for _, parts in _fit_one_batch(src, num_landmarks=5)]
    assert np.mean(lm[-5:]) < 0.75 * np.mean(lm[:5]), lm  # its weight is a tenth of the loss: it learns slower
    out = tmp_path / "lm.pt"
    path = train(TrainConfig(out=out, size="nano", img_size=96, batch=4, steps=3, warmup=1, workers=0,
                             input_size=128, sources={"pseudo": [{"root": str(toy_photos / "photos"),
                                                                  "labels": str(toy_photos / "labels_landmarks.json")}]}),
                 progress=False)
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["num_landmarks"] == 5
    faces = load_detector(path, conf_threshold=0.0).detect(np.zeros((90, 130, 3), np.uint8))
    assert faces and all(f.landmarks is not None and np.asarray(f.landmarks).shape == (5, 2) for f in faces)


def test_a_time_budgeted_detector_run_shows_its_time_budget(toy_photos, tmp_path, capsys):
    """A run of "a million steps" that its minutes end shows those minutes, not a million steps."""
    cfg = TrainConfig(out=tmp_path / "det.pt", size="nano", img_size=96, batch=2, steps=1_000_000, minutes=0.02,
                      warmup=2, workers=0, input_size=128,
                      sources={"pseudo": [{"root": str(toy_photos / "photos"), "labels": str(toy_photos / "labels.json")}],
                               "backgrounds": str(toy_photos / "scenes")})
    card = json.loads(train(cfg).with_suffix(".json").read_text())
    shown = capsys.readouterr().err
    assert "ends at the 0.02-min time budget" in shown and "1000000" not in shown
    assert 0 < card["train"]["steps_done"] < 1_000_000


def test_the_size_and_score_threshold_are_chosen_on_held_out_photos_and_written_to_the_card(toy_photos, tmp_path):
    """choose_size scores each size and each threshold on labelled photos and writes the best into the card, which
    the loaded detector then uses."""
    from training.detection.choose_size import main as choose

    path = train(TrainConfig(out=tmp_path / "det.pt", size="nano", img_size=96, batch=4, steps=3, warmup=2,
                             workers=0, input_size=128,
                             sources={"pseudo": [{"root": str(toy_photos / "photos"),
                                                  "labels": str(toy_photos / "labels.json")}]}), progress=False)
    out = choose([str(path), "--labels", str(toy_photos / "labels.json"), "--root", str(toy_photos / "photos"),
                  "--sizes", "96,128", "--write"])
    sizes = [r["input_size"] for r in out["input_size"]["table"]]
    assert sizes == [96, 128] and out["input_size"]["chosen"] in sizes
    table = out["conf_threshold"]["table"]
    assert len(table) > 10 and all(0 <= r["f1"] <= 1 for r in table)
    best = max(r["f1"] for r in table)
    assert [r["f1"] for r in table if r["conf_threshold"] == out["conf_threshold"]["chosen"]] == [best]
    det = load_detector(path)
    assert det.input_size == out["input_size"]["chosen"] and det.conf_threshold == out["conf_threshold"]["chosen"]
