"""Raw photos -> the crops a model sees, exactly as a gallery would cut them: detect, choose the person's face,
cut the model's chip (:func:`iznet.data.align.face_chip`). ``iznet evaluate`` and calibration use this, so a
verification figure judges the whole path a user gets, not the network alone on hand-made crops."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from iznet.data.align import ChipSpec, choose_face, face_chip
from iznet.detection.find import detect_faces
from iznet.detection.types import FaceBox
from iznet.imageio import read_image


@dataclass
class ChipReport:
    photos: int = 0
    #: How each chip was placed: "landmarks", "shape-predictor", "eyes", "box".
    aligned: dict[str, int] = field(default_factory=dict)
    #: Photos where the detector found no face and a centred box stood in (LFW-style portraits).
    fallback: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"photos": self.photos, "aligned": self.aligned, "no_face_found": len(self.fallback),
                "no_face_examples": self.fallback[:5]}


def photo_chips(paths: Iterable[Path | str], chip: ChipSpec, detector, *, min_face: int = 20,
                fallback_fraction: float = 0.45, progress: bool = False) -> tuple[list[np.ndarray], ChipReport]:
    """One chip per photo: the largest, most central face the detector finds; a photo where it finds none
    gets a centred square box of ``fallback_fraction`` of its side (recorded in the report)."""
    paths = list(paths)
    it: Iterable = paths
    if progress:
        from tqdm import tqdm

        it = tqdm(paths, desc="detect + align", unit="photo")
    report, chips = ChipReport(), []
    for p in it:
        image = read_image(p)
        h, w = image.shape[:2]
        faces, _padded = detect_faces(detector, image, min_face, clip=False)
        if faces:
            face = faces[choose_face(faces, w, h).index]
        else:
            side = fallback_fraction * min(h, w)
            face = FaceBox((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2, 0.0)
            report.fallback.append(str(p))
        crop, _lm, how = face_chip(image, face, chip)
        report.aligned[how] = report.aligned.get(how, 0) + 1
        report.photos += 1
        chips.append(crop)
    return chips, report
