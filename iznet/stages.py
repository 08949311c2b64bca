"""The labelling stages, each callable on its own: detect -> crop -> embed -> search -> draw.

:class:`LocalPipeline` runs them in one process; the services run the same functions behind gRPC (the
detection service: :func:`detect_faces` and :func:`face_crops`; the embedding service: the embedder's
``embed``; the gallery service: the gallery's ``search``) and the gateway composes them over the network and
calls :func:`annotate`. There is one labelling logic, here.

SEAM: issue 5 brings the core ``iznet.pipeline.Pipeline`` and ``iznet.drawing``; when it lands, this module's
stages should be that Pipeline's stages (or call them), so that the gateway and the in-process pipeline stay
one logic. Until then the embedder and gallery behind it are the stand-ins in :mod:`iznet.standin`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import cv2
import numpy as np

from iznet.data.align import DEFAULT_MARGIN, align_face
from iznet.detection.types import FaceBox

#: Side of the aligned crops handed to the embedder when it does not say otherwise.
CROP_SIZE = 96


def detect_faces(detector, image: np.ndarray, min_score: float = 0.0, max_faces: int = 0) -> list[FaceBox]:
    """Faces in a BGR photo, at least ``min_score`` (0: all the detector gives), largest first, at most
    ``max_faces`` (0: no cap)."""
    faces = [f for f in detector.detect(image) if f.score >= min_score]
    faces.sort(key=lambda f: -f.area)
    return faces[:max_faces] if max_faces > 0 else faces


def face_crops(image: np.ndarray, faces: Sequence[FaceBox], size: int = CROP_SIZE,
               margin: float = DEFAULT_MARGIN) -> list[np.ndarray]:
    """Aligned square crops (eyes levelled when the detector gave landmarks), one per face, in order."""
    return [align_face(image, f, size=size, margin=margin) for f in faces]


RED = (0, 0, 255)


def annotate(image: np.ndarray, faces: Sequence[FaceBox], names: Sequence[str]) -> np.ndarray:
    """The photo with a red box and the name over each face (a copy; the input is untouched).

    SEAM: issue 5's ``iznet.drawing`` replaces this minimal drawing."""
    out = image.copy()
    thick = max(1, round(max(image.shape[:2]) / 400))
    for f, name in zip(faces, names):
        p1, p2 = (int(f.x1), int(f.y1)), (int(f.x2), int(f.y2))
        cv2.rectangle(out, p1, p2, RED, thick)
        scale = max(0.4, min(1.2, f.width / 120))
        (tw, th), base = cv2.getTextSize(name, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        y = max(th + base, p1[1])
        cv2.rectangle(out, (p1[0], y - th - base), (p1[0] + tw, y), RED, -1)
        cv2.putText(out, name, (p1[0], y - base), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick,
                    cv2.LINE_AA)
    return out


@dataclass
class LabelledFace:
    box: FaceBox
    match: object  # iznet.standin.Match (or issue 5's equivalent)


@dataclass
class Labelled:
    faces: list[LabelledFace]
    annotated: np.ndarray | None
    detector: dict
    embedder: dict
    gallery: dict
    timings: dict[str, float] = field(default_factory=dict)


class LocalPipeline:
    """The stages in one process: a photo in, every face boxed and named (the in-process reference the gateway
    is measured against in ``bench/gateway_vs_local.py``)."""

    def __init__(self, detector, embedder, gallery, detector_version: dict | None = None):
        self.detector, self.embedder, self.gallery = detector, embedder, gallery
        self.detector_version = detector_version or {"name": getattr(detector, "name", "detector"),
                                                     "kind": "detector"}

    def label(self, image: np.ndarray, *, annotate_photo: bool = False, min_score: float = 0.0,
              threshold: float = 0.0, max_faces: int = 0) -> Labelled:
        t = {}
        t0 = time.perf_counter()
        faces = detect_faces(self.detector, image, min_score, max_faces)
        t1 = time.perf_counter()
        crops = face_crops(image, faces, getattr(self.embedder, "input_size", CROP_SIZE))
        vectors = self.embedder.embed(crops)
        t2 = time.perf_counter()
        matches = self.gallery.search(vectors, model_digest=self.embedder.version["digest"], threshold=threshold)
        t3 = time.perf_counter()
        drawn = annotate(image, faces, [m.name for m in matches]) if annotate_photo else None
        t4 = time.perf_counter()
        t.update(detect=(t1 - t0) * 1e3, embed=(t2 - t1) * 1e3, search=(t3 - t2) * 1e3, draw=(t4 - t3) * 1e3,
                 total=(t4 - t0) * 1e3)
        return Labelled([LabelledFace(f, m) for f, m in zip(faces, matches)], drawn, self.detector_version,
                        self.embedder.version, self.gallery.version, t)
