"""Tiny synthetic face photos (drawn, not real) so the training tests need no shared data."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest


def draw_face(img: np.ndarray, x: int, y: int, s: int, rng: np.random.Generator) -> list[float]:
    """A cartoon face of width ``s`` at (x, y): skin ellipse, dark eyes, a mouth. Returns its box."""
    tone = int(rng.integers(120, 230))
    cx, cy = x + s // 2, y + int(s * 0.6)
    cv2.ellipse(img, (cx, cy), (s // 2, int(s * 0.6)), 0, 0, 360, (tone - 40, tone - 10, tone), -1)
    for ex in (cx - s // 5, cx + s // 5):
        cv2.circle(img, (ex, cy - s // 8), max(1, s // 12), (30, 30, 30), -1)
    cv2.ellipse(img, (cx, cy + s // 4), (s // 5, max(1, s // 14)), 0, 0, 360, (40, 40, 140), -1)
    return [cx - s / 2, cy - s * 0.6, cx + s / 2, cy + s * 0.6]


def face_landmarks(box: list[float]) -> list[float]:
    """The five points of a cartoon face drawn by :func:`draw_face` in ``box``: eyes, nose, mouth corners."""
    s = box[2] - box[0]
    cx, cy = (box[0] + box[2]) / 2, box[1] + s * 0.6
    pts = [(cx - s / 5, cy - s / 8), (cx + s / 5, cy - s / 8), (cx, cy), (cx - s / 5, cy + s / 4), (cx + s / 5, cy + s / 4)]
    return [round(v, 2) for p in pts for v in p]


@pytest.fixture(scope="session")
def toy_photos(tmp_path_factory):
    """8 photos (160 x 160) with 1-3 cartoon faces each, labels JSON in the pseudo-label format (boxes; and
    ``labels_landmarks.json`` with the five points, as MTCNN gives them), 4 scenes."""
    root = tmp_path_factory.mktemp("toy")
    rng = np.random.default_rng(0)
    labels, with_landmarks = {}, {}
    (root / "photos").mkdir()
    for i in range(8):
        img = rng.integers(0, 255, (160, 160, 3), dtype=np.uint8)
        img = cv2.GaussianBlur(img, (9, 9), 3)
        boxes = []
        for j in range(int(rng.integers(1, 4))):
            s = int(rng.integers(24, 48))
            x, y = j * 52 + 2, int(rng.integers(0, 160 - int(s * 1.25)))
            boxes.append([*draw_face(img, x, y, s, rng), 0.99])
        cv2.imwrite(str(root / "photos" / f"p{i}.png"), img)
        labels[f"p{i}.png"] = boxes
        with_landmarks[f"p{i}.png"] = [[*b, *face_landmarks(b)] for b in boxes]
    (root / "labels.json").write_text(json.dumps({"teacher": "toy", "images": labels}))
    (root / "labels_landmarks.json").write_text(json.dumps({"teacher": "toy", "images": with_landmarks}))
    (root / "scenes").mkdir()
    for i in range(4):
        img = cv2.GaussianBlur(rng.integers(0, 255, (200, 240, 3), dtype=np.uint8), (15, 15), 5)
        cv2.imwrite(str(root / "scenes" / f"s{i}.png"), img)
    return root
