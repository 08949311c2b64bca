"""Anchor boxes from k-means over the training boxes (YOLOv2/v3), with 1 - IoU as the distance.

Boxes are compared by width and height only (as if they shared a centre). The anchors come back sorted by
area, smallest first, so ``anchors[:A]`` go to stride 8, the next ``A`` to stride 16, the last to stride 32.
"""

from __future__ import annotations

import numpy as np

from iznet.errors import UserInputError


def wh_iou(wh: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """IoU of (N, 2) sizes against (K, 2) sizes, centres aligned: an (N, K) array."""
    wh = np.asarray(wh, np.float64)[:, None, :]
    anchors = np.asarray(anchors, np.float64)[None, :, :]
    inter = np.minimum(wh, anchors).prod(-1)
    return inter / (wh.prod(-1) + anchors.prod(-1) - inter)


def kmeans_anchors(wh: np.ndarray, k: int = 9, iters: int = 100, seed: int = 0) -> np.ndarray:
    """k anchors (k, 2) in the units of ``wh``, by k-means with distance 1 - IoU; sorted by area."""
    wh = np.asarray(wh, np.float64).reshape(-1, 2)
    wh = wh[(wh > 0).all(1)]
    if len(wh) < k:
        raise UserInputError(f"k-means needs at least {k} boxes, got {len(wh)}")
    rng = np.random.default_rng(seed)
    # k-means++ seeding on 1 - IoU.
    centres = [wh[rng.integers(len(wh))]]
    for _ in range(1, k):
        d = 1 - wh_iou(wh, np.asarray(centres)).max(1)
        p = d**2 / max((d**2).sum(), 1e-12)
        centres.append(wh[rng.choice(len(wh), p=p)])
    centres = np.asarray(centres)
    assign = None
    for _ in range(iters):
        new = wh_iou(wh, centres).argmax(1)
        if assign is not None and (new == assign).all():
            break
        assign = new
        for j in range(k):
            members = wh[assign == j]
            if len(members):
                centres[j] = np.median(members, axis=0)
    return centres[np.argsort(centres.prod(1))].astype(np.float32)


def mean_best_iou(wh: np.ndarray, anchors: np.ndarray) -> float:
    """How well the anchors fit: the mean over boxes of the best IoU with any anchor."""
    return float(wh_iou(np.asarray(wh).reshape(-1, 2), anchors).max(1).mean())
