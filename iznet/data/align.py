"""Choosing the person's face in a photo and cutting an aligned, square crop of it.

Alignment uses the best landmarks at hand: five points (eyes, nose, mouth corners) or two eyes make the eyes
level; with none, the crop is a square around the box with a margin. Every crop is centred on the box, so the
framing is the same whichever way it was aligned.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from iznet.detection.types import FaceBox
from iznet.sizes import CROP_SIZE

DEFAULT_SIZE = CROP_SIZE
DEFAULT_MARGIN = 0.2


@dataclass(frozen=True)
class ChipSpec:
    """The face crop an embedder wants: its geometry travels with the model (cards, the Detect call).

    - ``box``: a ``size`` square around the detector's box, ``padding`` (fraction of the box side) added
      each side, eyes levelled when landmarks are known (the dataset builder's crops; models trained here).
    - ``dlib``: dlib's face chip (``get_face_chip(size, padding)``): a similarity warp that puts five
      landmarks where dlib's mean face has them. The detector's own 5 landmarks when it gives them
      (MTCNN), else dlib's 5-point shape predictor run in the box. dlib's ResNet wants ``dlib:150:0.25``.
    """

    kind: str = "box"
    size: int = DEFAULT_SIZE
    padding: float = DEFAULT_MARGIN

    def __post_init__(self) -> None:
        if self.kind not in ("box", "dlib"):
            raise ValueError(f"unknown chip kind {self.kind!r}: box or dlib")
        if not 8 <= int(self.size) <= 1024 or not 0 <= float(self.padding) <= 2:
            raise ValueError(f"chip size {self.size} / padding {self.padding} out of range")

    def __str__(self) -> str:
        return f"{self.kind}:{int(self.size)}:{float(self.padding):g}"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "size": int(self.size), "padding": float(self.padding)}

    @classmethod
    def parse(cls, value: "str | dict | ChipSpec | None") -> "ChipSpec":
        """``"dlib:150:0.25"``, ``"box:160:0.2"``, a dict from a model card, or None (the box default)."""
        if value is None or value == "":
            return cls()
        if isinstance(value, ChipSpec):
            return value
        if isinstance(value, dict):
            return cls(str(value.get("kind", "box")), int(value.get("size", DEFAULT_SIZE)),
                       float(value.get("padding", DEFAULT_MARGIN)))
        parts = str(value).split(":")
        try:
            kind = parts[0]
            size = int(parts[1]) if len(parts) > 1 else (150 if kind == "dlib" else DEFAULT_SIZE)
            padding = float(parts[2]) if len(parts) > 2 else (0.25 if kind == "dlib" else DEFAULT_MARGIN)
            return cls(kind, size, padding)
        except (ValueError, IndexError) as exc:
            raise ValueError(f"bad chip spec {value!r} (kind:size:padding, e.g. dlib:150:0.25): {exc}") from None


BOX_CHIP = ChipSpec()
DLIB_CHIP = ChipSpec("dlib", 150, 0.25)


@dataclass
class Choice:
    index: int
    reason: str
    #: True when another face was nearly as good a candidate (the choice may be wrong).
    ambiguous: bool = False


def choose_face(faces: list[FaceBox], width: int, height: int) -> Choice | None:
    """The person's face in a photo of them: the largest and most central one.

    Each face scores area x (1 - normalised distance from the centre)^2; a runner-up within 80% of the
    winner's score marks the choice ambiguous.
    """
    if not faces:
        return None
    if len(faces) == 1:
        return Choice(0, "only face")
    cx, cy, half_diag = width / 2, height / 2, math.hypot(width, height) / 2
    scores = []
    for f in faces:
        fx, fy = f.center
        closeness = max(0.0, 1.0 - math.hypot(fx - cx, fy - cy) / half_diag)
        scores.append(f.area * closeness**2)
    order = sorted(range(len(faces)), key=lambda i: -scores[i])
    best, second = order[0], order[1]
    ambiguous = scores[second] >= 0.8 * scores[best]
    return Choice(best, f"largest and most central of {len(faces)}", ambiguous)


_per_thread = threading.local()


def _eye_cascade() -> cv2.CascadeClassifier:
    """This thread's eye cascade: a CascadeClassifier is not safe to share between threads (two Pipelines
    labelling in parallel threads crashed inside OpenCV), and loading one per thread costs ~10 ms once."""
    cascade = getattr(_per_thread, "eye_cascade", None)
    if cascade is None:
        cascade = _per_thread.eye_cascade = cv2.CascadeClassifier(
            str(Path(cv2.data.haarcascades) / "haarcascade_eye.xml"))
    return cascade


def find_eyes(image: np.ndarray, box: FaceBox) -> np.ndarray | None:
    """Two eye centres (left then right in the image) inside a face box, by OpenCV's eye cascade.

    Returns None unless the pair is plausible: one eye in each half of the box, in its upper part, a sane
    distance apart and tilted less than 30 degrees. Good enough to level frontal faces; the trained
    detector's landmarks replace it.
    """
    h, w = image.shape[:2]
    x1, y1 = max(0, int(box.x1)), max(0, int(box.y1))
    x2, y2 = min(w, int(box.x2)), min(h, int(box.y1 + 0.6 * box.height))
    if x2 - x1 < 24 or y2 - y1 < 12:
        return None
    roi = cv2.cvtColor(image[y1:y2, x1:x2], cv2.COLOR_BGR2GRAY)
    min_eye = max(6, int(box.width * 0.1))
    eyes = _eye_cascade().detectMultiScale(roi, 1.1, 3, minSize=(min_eye, min_eye), maxSize=(int(box.width * 0.45),) * 2)
    if len(eyes) < 2:
        return None
    mid = box.width / 2
    centres = [(x1 + ex + ew / 2, y1 + ey + eh / 2, ew * eh) for ex, ey, ew, eh in eyes]
    left = [c for c in centres if c[0] - box.x1 < mid]
    right = [c for c in centres if c[0] - box.x1 >= mid]
    if not left or not right:
        return None
    le = max(left, key=lambda c: c[2])
    re = max(right, key=lambda c: c[2])
    dx, dy = re[0] - le[0], re[1] - le[1]
    if not (0.2 * box.width <= dx <= 0.7 * box.width) or abs(math.degrees(math.atan2(dy, dx))) > 30:
        return None
    return np.array([[le[0], le[1]], [re[0], re[1]]], dtype=np.float32)


def eye_angle(landmarks: np.ndarray | None) -> float | None:
    """Degrees the eye line is tilted (positive: right eye lower), from 2 or 5 landmarks; None without them."""
    if landmarks is None or len(landmarks) < 2:
        return None
    (lx, ly), (rx, ry) = landmarks[0], landmarks[1]
    return math.degrees(math.atan2(ry - ly, rx - lx))


def align_face(
    image: np.ndarray,
    box: FaceBox,
    size: int = DEFAULT_SIZE,
    margin: float = DEFAULT_MARGIN,
    landmarks: np.ndarray | None = None,
) -> np.ndarray:
    """A ``size`` x ``size`` crop centred on the box, ``margin`` (fraction of the box side) added each side,
    rotated so the eyes are level when landmarks are given. Parts outside the photo are black."""
    angle = eye_angle(landmarks if landmarks is not None else box.landmarks) or 0.0
    side = max(box.width, box.height) * (1 + 2 * margin)
    scale = size / max(side, 1e-6)
    if scale < 0.5:
        # warpAffine has no area filter: shrink the photo first so the warp never decimates (aliasing).
        pre = scale * 2
        image = cv2.resize(image, None, fx=pre, fy=pre, interpolation=cv2.INTER_AREA)
        box = box.scaled(pre)
        scale = 0.5
    cx, cy = box.center
    # Rotate about the box centre by the eye angle, scale to the output, then move the centre to the middle.
    m = cv2.getRotationMatrix2D((cx, cy), angle, scale)
    m[0, 2] += size / 2 - cx
    m[1, 2] += size / 2 - cy
    return cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


def face_chip(image: np.ndarray, box: FaceBox, spec: ChipSpec = BOX_CHIP, *,
              find_eyes_in_box: bool = True) -> tuple[np.ndarray, np.ndarray | None, str]:
    """The crop ``spec`` asks for, the landmarks that placed it, and how: ``landmarks`` (the detector's),
    ``shape-predictor`` (dlib's 5 points found in the box), ``eyes`` (OpenCV's eye cascade) or ``box``."""
    if spec.kind == "dlib":
        from iznet.data.chip import dlib_chip_matrix, extract_chip

        if box.landmarks is not None and len(box.landmarks) == 5:
            from iznet.detection.mtcnn import align_to_dlib_chip

            # The detector's own five points (MTCNN's eyes, nose, mouth corners) onto dlib's geometry.
            chip, _m = align_to_dlib_chip(image, box.landmarks, spec.size, spec.padding)
            return chip, np.asarray(box.landmarks, np.float32), "landmarks"
        from iznet.data.shape_predictor import default_predictor, eye_centres

        points = default_predictor().predict(image, (box.x1, box.y1, box.x2, box.y2))
        chip = extract_chip(image, dlib_chip_matrix(points, spec.size, spec.padding), spec.size)
        # dlib's points are eye corners and the nose base: report the eye centres (FaceBox's 2 landmarks).
        return chip, eye_centres(points), "shape-predictor"
    landmarks = box.landmarks
    if landmarks is None and find_eyes_in_box:
        landmarks = find_eyes(image, box)
    how = "box" if landmarks is None else ("eyes" if len(landmarks) == 2 else "landmarks")
    return align_face(image, box, spec.size, spec.padding, landmarks), landmarks, how
