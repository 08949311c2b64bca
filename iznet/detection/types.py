"""What a detector returns, and what every detector looks like."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass
class FaceBox:
    """A face: box corners in pixels, confidence, and optional landmarks.

    ``landmarks`` is a (K, 2) float array in pixels when the detector gives them. With K == 5 the order is
    left eye, right eye, nose, left mouth corner, right mouth corner ("left" = smaller x in the image).
    With K == 2, just the two eyes.
    """

    x1: float
    y1: float
    x2: float
    y2: float
    score: float = 1.0
    landmarks: np.ndarray | None = field(default=None, repr=False)

    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1

    @property
    def area(self) -> float:
        return max(0.0, self.width) * max(0.0, self.height)

    @property
    def center(self) -> tuple[float, float]:
        return (self.x1 + self.x2) / 2, (self.y1 + self.y2) / 2

    def __iter__(self):
        """A box reads as its corners ``(x1, y1, x2, y2)``."""
        return iter((self.x1, self.y1, self.x2, self.y2))

    def __getitem__(self, i: int) -> float:
        return (self.x1, self.y1, self.x2, self.y2)[i]

    def __len__(self) -> int:
        return 4

    def as_list(self) -> list[float]:
        """The corners rounded to 0.01 px, from their float32 values: the precision they cross gRPC with, so
        a box reads the same in-process and from the gateway."""
        return [round(float(np.float32(v)), 2) for v in (self.x1, self.y1, self.x2, self.y2)]

    def scaled(self, sx: float, sy: float | None = None) -> "FaceBox":
        sy = sx if sy is None else sy
        lm = None if self.landmarks is None else self.landmarks * np.array([sx, sy], dtype=np.float32)
        return FaceBox(self.x1 * sx, self.y1 * sy, self.x2 * sx, self.y2 * sy, self.score, lm)


@runtime_checkable
class Detector(Protocol):
    """Anything that finds faces in a BGR uint8 image."""

    #: A short name for reports and manifests, e.g. "haar" or "ultralight-320".
    name: str

    def detect(self, image: np.ndarray) -> list[FaceBox]: ...
