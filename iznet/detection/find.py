"""Finding faces with any :class:`~iznet.detection.types.Detector`, including in photos that are already
tight face crops (shared by the dataset builder, gallery enrollment and labelling)."""

from __future__ import annotations

import cv2
import numpy as np

from iznet.detection.types import Detector, FaceBox


def detect_faces(detector: Detector, image: np.ndarray, min_face: int) -> tuple[list[FaceBox], bool]:
    """Faces of at least ``min_face`` pixels, and whether they were found only after padding.

    Photos that are already tight face crops (the face touching the borders) defeat most detectors, so when
    none is found we look again with a border added (replicated edge pixels) and map the boxes back.
    """
    faces = [f for f in detector.detect(image) if min(f.width, f.height) >= min_face]
    if faces:
        return faces, False
    h, w = image.shape[:2]
    pad = int(0.25 * max(h, w))
    padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    found = []
    for f in detector.detect(padded):
        f = FaceBox(max(0.0, f.x1 - pad), max(0.0, f.y1 - pad), min(w, f.x2 - pad), min(h, f.y2 - pad), f.score,
                    None if f.landmarks is None else f.landmarks - pad)
        if min(f.width, f.height) >= min_face:
            found.append(f)
    return found, bool(found)
