"""Perceptual hash (pHash): 64 bits from the low frequencies of the image's DCT.

Robust to resizing, re-compression and small colour changes, so re-uploads and resized copies of one photo
hash within a few bits of each other, while different photos differ in about half the bits.
"""

from __future__ import annotations

import cv2
import numpy as np


def phash(image: np.ndarray) -> int:
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    small = cv2.resize(gray, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:8, :8].flatten()
    bits = low > np.median(low[1:])  # the DC term is the mean brightness, not structure
    return int("".join("1" if b else "0" for b in bits), 2)


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def to_hex(h: int) -> str:
    return f"{h:016x}"


def from_hex(s: str) -> int:
    return int(s, 16)
