"""Losses for embedding training.

* :func:`triplet_loss` FaceNet eq. (1): ``sum [ ||f(a)-f(p)||^2 - ||f(a)-f(n)||^2 + alpha ]_+``.
* :func:`mine_negatives` online mining inside a batch: for each (anchor, positive) pick a *semi-hard* negative
  (``d(a,p) < d(a,n) < d(a,p) + alpha``; FaceNet eq. 4's neighbourhood) or the *hard* one (closest negative).
* :class:`PairClassifier` DeepFace section 4.2: a learned weighted chi-square / L1 distance between two
  embeddings fed to a logistic unit, trained with binary cross-entropy on same/different pairs.
* :class:`MarginSoftmax` CosFace (``s*(cos - m)`` for the true class) or ArcFace (``s*cos(theta + m)``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from iznet.sizes import EMBEDDING_DIM


def squared_distances(x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """Pairwise squared Euclidean distances (N, M), clamped at 0."""
    y = x if y is None else y
    d = (x * x).sum(1, keepdim=True) - 2 * x @ y.T + (y * y).sum(1)[None, :]
    return d.clamp_min(0)


def triplet_loss(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, alpha: float = 0.2,
                 reduction: str = "mean") -> torch.Tensor:
    """FaceNet eq. (1) with squared L2 distances (embeddings assumed L2-normalised)."""
    dap = (anchor - positive).pow(2).sum(1)
    dan = (anchor - negative).pow(2).sum(1)
    loss = F.relu(dap - dan + alpha)
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


@torch.no_grad()
def mine_negatives(emb: torch.Tensor, labels: torch.Tensor, anchors: torch.Tensor, positives: torch.Tensor,
                   alpha: float = 0.2, mode: str = "semihard", fallback: torch.Tensor | None = None,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Choose a negative index (into ``emb``) for each (anchor, positive) index pair.

    ``semihard``: a uniformly random negative with ``d(a,p) < d(a,n) < d(a,p) + alpha``; when none exists, the
    *hardest negative farther than the positive* (the easiest violator is absent, so take the closest negative
    that is still farther, FaceNet's rule), else ``fallback`` (the sampled negative) or the hardest.
    ``hard``: the closest negative (argmin d(a,n)). Returns (negative indices, mask of triplets that were
    semi-hard by the strict definition) so callers can log how often mining succeeded.
    """
    d = squared_distances(emb)
    da = d[anchors]                                        # (T, N)
    dap = d[anchors, positives][:, None]                   # (T, 1)
    neg_mask = labels[None, :] != labels[anchors][:, None]  # (T, N)
    inf = torch.tensor(float("inf"), device=emb.device)
    if mode == "hard":
        hard = torch.where(neg_mask, da, inf).argmin(1)
        return hard, torch.zeros(len(anchors), dtype=torch.bool)
    if mode != "semihard":
        raise ValueError(f"unknown mining mode {mode!r}")
    semi = neg_mask & (da > dap) & (da < dap + alpha)
    has_semi = semi.any(1)
    # random semi-hard choice: random scores, masked argmax
    scores = torch.rand(da.shape, generator=generator)
    pick_semi = torch.where(semi, scores, -inf).argmax(1)
    farther = neg_mask & (da > dap)
    pick_far = torch.where(farther, da, inf).argmin(1)
    has_far = farther.any(1)
    if fallback is None:
        fallback = torch.where(neg_mask, da, inf).argmin(1)
    out = torch.where(has_semi, pick_semi, torch.where(has_far, pick_far, fallback))
    return out, has_semi


class PairClassifier(nn.Module):
    """DeepFace 4.2: ``p(same) = sigmoid(sum_i w_i * dist_i(f1, f2) + b)``, ``dist`` = |f1-f2| (weighted L1,
    default) or the chi-square ``(f1-f2)^2 / (f1+f2)`` (DeepFace's, meant for non-negative features)."""

    def __init__(self, dim: int = EMBEDDING_DIM, kind: str = "l1"):
        super().__init__()
        if kind not in ("l1", "chi2"):
            raise ValueError(f"unknown pair distance {kind!r}")
        self.kind = kind
        # start as a plain (negative) distance: same pairs are close, so weights are negative
        self.weight = nn.Parameter(torch.full((dim,), -10.0 / math.sqrt(dim)))
        self.bias = nn.Parameter(torch.tensor(3.0))

    def features(self, f1: torch.Tensor, f2: torch.Tensor) -> torch.Tensor:
        if self.kind == "l1":
            return (f1 - f2).abs()
        return (f1 - f2).pow(2) / ((f1 + f2).abs() + 1e-6)

    def forward(self, f1: torch.Tensor, f2: torch.Tensor) -> torch.Tensor:
        """Logits of "same person"."""
        return self.features(f1, f2) @ self.weight + self.bias

    def loss(self, f1: torch.Tensor, f2: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(self(f1, f2), same.float())


class MarginSoftmax(nn.Module):
    """CosFace (``kind="cosface"``, margin on the cosine) or ArcFace (``kind="arcface"``, margin on the angle)
    over ``num_classes`` learned, normalised class centres. Input embeddings must be L2-normalised."""

    def __init__(self, dim: int, num_classes: int, kind: str = "cosface", scale: float = 30.0,
                 margin: float | None = None):
        super().__init__()
        if kind not in ("cosface", "arcface"):
            raise ValueError(f"unknown margin softmax {kind!r}")
        self.kind, self.scale = kind, scale
        self.margin = margin if margin is not None else (0.35 if kind == "cosface" else 0.5)
        self.weight = nn.Parameter(torch.empty(num_classes, dim))
        nn.init.normal_(self.weight, std=0.01)

    def logits(self, emb: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        cos = emb @ F.normalize(self.weight, dim=1).T
        if labels is None:
            return self.scale * cos
        onehot = F.one_hot(labels, cos.shape[1]).bool()
        if self.kind == "cosface":
            target = cos - self.margin
        else:
            theta = torch.acos(cos.clamp(-1 + 1e-7, 1 - 1e-7))
            target = torch.cos(theta + self.margin)
            # keep the logit monotonic when theta + m > pi (insightface's "easy margin" alternative)
            target = torch.where(theta + self.margin < math.pi, target, cos - self.margin * math.sin(self.margin))
        return self.scale * torch.where(onehot, target, cos)

    def forward(self, emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.logits(emb, labels), labels)
