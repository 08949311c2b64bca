"""Pseudo-labels: boxes for photos that have none, from a teacher detector (no hand labelling).

The labels are cached as JSON ``{"teacher": ..., "images": {relative_path: [[x1, y1, x2, y2, score], ...]}}``,
with the teacher's five landmarks after the score when it gives them (MTCNN: 15 numbers a face),
so a training run does not re-run the teacher. Photos are padded to the teacher's 4:3 aspect before it
sees them (the Ultra-Light models resize the whole photo to 320x240 / 640x480; a square LFW photo would
otherwise be stretched), and boxes are mapped back to the original pixels.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from iznet.detection.types import Detector, FaceBox
from iznet.imageio import is_image_file, read_image


def pad_to_aspect(image: np.ndarray, aspect: float = 4 / 3) -> np.ndarray:
    """Pad (bottom/right, grey) so width / height == ``aspect``; the top-left pixel keeps its coordinates."""
    h, w = image.shape[:2]
    if w / h < aspect:
        new_w, new_h = int(round(h * aspect)), h
    else:
        new_w, new_h = w, int(round(w / aspect))
    out = np.full((new_h, new_w, 3), 114, dtype=np.uint8)
    out[:h, :w] = image
    return out


def label_image(teacher: Detector, image: np.ndarray, min_score: float = 0.0) -> list[FaceBox]:
    h, w = image.shape[:2]
    faces = teacher.detect(pad_to_aspect(image))
    out = []
    for f in faces:
        x1, y1, x2, y2 = min(max(f.x1, 0), w), min(max(f.y1, 0), h), min(max(f.x2, 0), w), min(max(f.y2, 0), h)
        if f.score >= min_score and x2 - x1 >= 4 and y2 - y1 >= 4:
            out.append(FaceBox(x1, y1, x2, y2, f.score, f.landmarks))
    return out


def label_folder(
    teacher: Detector,
    root: Path,
    out_path: Path,
    *,
    limit: int | None = None,
    min_score: float = 0.0,
) -> dict:
    """Run ``teacher`` over every image under ``root``; write and return the JSON cache (resumable)."""
    root = Path(root)
    paths = sorted(p for p in root.rglob("*") if is_image_file(p))
    if limit is not None:
        paths = paths[:limit]
    cache: dict = {"teacher": teacher.name, "root": str(root), "images": {}}
    if out_path.is_file():
        old = json.loads(out_path.read_text())
        if old.get("teacher") == teacher.name:
            cache["images"] = old.get("images", {})
    todo = [p for p in paths if str(p.relative_to(root)) not in cache["images"]]
    for i, p in enumerate(tqdm(todo, desc=f"pseudo-labels ({teacher.name}) {root.name}", unit="img")):
        faces = label_image(teacher, read_image(p), min_score=min_score)
        cache["images"][str(p.relative_to(root))] = [
            [*f.as_list(), round(f.score, 4),
             *([] if f.landmarks is None else [round(float(v), 2) for v in np.asarray(f.landmarks).ravel()])]
            for f in faces]
        if (i + 1) % 500 == 0:
            _write(out_path, cache)
    _write(out_path, cache)
    return cache


def _write(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.part")
    tmp.write_text(json.dumps(obj))
    tmp.replace(path)


def load_labels(path: Path) -> dict[str, np.ndarray]:
    data = json.loads(Path(path).read_text())
    out = {}
    for k, v in data["images"].items():  # 5 numbers a face, or 15 with landmarks
        width = 15 if v and len(v[0]) == 15 else 5
        out[k] = np.asarray(v, dtype=np.float32).reshape(-1, width)
    return out


if __name__ == "__main__":  # python -m training.detection.pseudo_labels ROOT OUT.json [teacher]
    import sys

    import torch  # noqa: F401  (keeps thread settings consistent with the trainer)

    from iznet.registry import create_detector

    cv2.setNumThreads(1)
    label_folder(create_detector(sys.argv[3] if len(sys.argv) > 3 else "ultralight-640", threads=1), Path(sys.argv[1]), Path(sys.argv[2]))
