"""The annotated photo: a red box around every face and its name (or ``unknown``) above it, as the study drew
them. Line width and lettering scale with the photo and the face, so the answer is readable on a 200-pixel
crop and on a 6000-pixel group photo alike."""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

RED = (0, 0, 255)  # BGR
WHITE = (255, 255, 255)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def annotate(image: np.ndarray, faces: Sequence, show_score: bool = True) -> np.ndarray:
    """A copy of ``image`` (BGR) with ``faces`` (:class:`iznet.pipeline.FaceResult`) drawn on it."""
    out = np.ascontiguousarray(image.copy())
    h, w = out.shape[:2]
    side = max(h, w)
    thick = max(1, round(side / 400))
    for f in faces:
        b = f.box
        x1, y1, x2, y2 = (int(round(v)) for v in (b.x1, b.y1, b.x2, b.y2))
        cv2.rectangle(out, (x1, y1), (x2, y2), RED, thick, cv2.LINE_AA)
        label = f.identity.name
        if show_score and f.identity.score > -1:
            label += f" {f.identity.score:.2f}"
        # Letters about a quarter of the face wide, never unreadably small nor absurdly large.
        target_h = min(max(side / 60, (x2 - x1) / 6, 10), side / 12)
        scale = target_h / 22.0
        (tw, _), _ = cv2.getTextSize(label, FONT, scale, 1)
        # Not much wider than the face, so neighbours' names do not cover each other (but at least 10 px high).
        limit = max(1.3 * (x2 - x1), 10 * len(label) * 0.55)
        if tw > limit:
            scale *= limit / tw
        t = max(1, round(scale * 1.6))
        (tw, th), base = cv2.getTextSize(label, FONT, scale, t)
        pad = max(2, round(th * 0.25))
        # Above the box when there is room, else inside its top edge; kept within the photo.
        ty = y1 - pad - base if y1 - th - 2 * pad - base >= 0 else min(h - base - pad, y1 + th + pad)
        tx = min(max(0, x1), max(0, w - tw - 2 * pad))
        cv2.rectangle(out, (tx, ty - th - pad), (tx + tw + 2 * pad, ty + base + pad // 2), RED, -1)
        cv2.putText(out, label, (tx + pad, ty), FONT, scale, WHITE, t, cv2.LINE_AA)
    return out
