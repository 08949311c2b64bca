"""Drawing detections: red boxes (BGR (0, 0, 255)) with the score, landmarks as dots."""

from __future__ import annotations

import cv2
import numpy as np

from iznet.detection.types import FaceBox

RED = (0, 0, 255)


def draw_boxes(image: np.ndarray, faces: list[FaceBox], color=RED, show_score: bool = True) -> np.ndarray:
    """A copy of ``image`` with each face's box drawn (line width scaled to the image)."""
    out = image.copy()
    thick = max(1, round(max(image.shape[:2]) / 400))
    for f in faces:
        p1, p2 = (int(round(f.x1)), int(round(f.y1))), (int(round(f.x2)), int(round(f.y2)))
        cv2.rectangle(out, p1, p2, color, thick)
        if show_score:
            cv2.putText(out, f"{f.score:.2f}", (p1[0], max(10, p1[1] - 3)), cv2.FONT_HERSHEY_SIMPLEX,
                        0.35 * thick, color, max(1, thick // 2), cv2.LINE_AA)
        if f.landmarks is not None:
            for x, y in np.asarray(f.landmarks).reshape(-1, 2):
                cv2.circle(out, (int(round(x)), int(round(y))), thick + 1, color, -1)
    return out
