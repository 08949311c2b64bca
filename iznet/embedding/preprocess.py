"""How a face crop becomes a network input, per network: keep the centre ``crop_fraction`` of the crop (the
dataset builder's crops carry a margin around the face), resize to ``input_size``, BGR -> RGB, scale to
roughly [-1, 1] as ``(x - 127.5) / 128``. Training uses the same function on a slightly larger region so that
random crops stay centred on average (see ``training/data.py``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np
import torch

from iznet.errors import ImageError


@dataclass(frozen=True)
class Preprocess:
    input_size: int = 96
    #: fraction of the crop's side kept around its centre before resizing
    crop_fraction: float = 1.0
    mean: float = 127.5
    std: float = 128.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocess":
        return cls(**{k: d[k] for k in ("input_size", "crop_fraction", "mean", "std") if k in d})


def center_region(img: np.ndarray, fraction: float) -> np.ndarray:
    """The centred square covering ``fraction`` of the shorter side."""
    if img is None or img.ndim != 3 or img.shape[2] != 3 or img.size == 0:
        raise ImageError(f"expected a BGR face crop (H, W, 3), got shape {getattr(img, 'shape', None)}")
    h, w = img.shape[:2]
    side = max(1, int(round(min(h, w) * fraction)))
    y0, x0 = (h - side) // 2, (w - side) // 2
    return img[y0:y0 + side, x0:x0 + side]


def crop_resize(img: np.ndarray, fraction: float, size: int) -> np.ndarray:
    """Centre region then resize to size x size (uint8 BGR)."""
    region = center_region(img, fraction)
    interp = cv2.INTER_AREA if region.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(region, (size, size), interpolation=interp)


def to_tensor(batch_bgr: np.ndarray, mean: float = 127.5, std: float = 128.0) -> torch.Tensor:
    """(N, H, W, 3) uint8 BGR -> (N, 3, H, W) float32 RGB normalised."""
    x = torch.from_numpy(np.ascontiguousarray(batch_bgr[..., ::-1])).permute(0, 3, 1, 2).float()
    return (x - mean) / std


def prepare(crops: list[np.ndarray], pp: Preprocess) -> torch.Tensor:
    arr = np.stack([crop_resize(c, pp.crop_fraction, pp.input_size) for c in crops])
    return to_tensor(arr, pp.mean, pp.std)
