"""Uniform sampling of triplets and pairs without listing them (the study's Appendix A, corrected).

Classes C_1..C_m of sizes n_i, N = sum n_i. A *triplet* is an unordered same-class pair {a, p} plus a
negative n from another class; a *pair* is two distinct items, "same" or "different".

To draw uniformly we pick a class with probability proportional to how many of the wanted objects it anchors,
then draw uniformly inside it. The class draw goes through a :class:`FenwickTree` over the integer weights
(cumulative intervals, O(log m) look-up, O(log m) update), exactly the role the study's segment tree plays.

Weights (``weighting="exact"``, the default):

* triplets: w_i = C(n_i, 2) * (N - n_i)   -> every triplet has probability 1 / sum_j w_j
* positive pairs: w_i = C(n_i, 2)         -> every same pair equally likely
* negative pairs: w_i = n_i * (N - n_i)   -> every different pair equally likely

Note: the study (and DESIGN.md's wording) weight the anchor class of a triplet by C(n_i, 2) alone. That makes
each *pair* equally likely, but then the negative is uniform over a set whose size N - n_i depends on i, so
triplets are not uniform: in the study's own example C1={a,b}, C2={c,d,e} it gives the three triplets with
pair (a,b) 1/12 each and the six others 1/8 each, not 1/9. ``weighting="study"`` reproduces that scheme so
tests can show the difference; the default is exactly uniform.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import numpy as np


class FenwickTree:
    """Binary indexed tree over non-negative integer weights: prefix sums and "which interval holds v"."""

    def __init__(self, weights: Sequence[int]):
        self.n = len(weights)
        self.tree = [0] * (self.n + 1)
        for i, w in enumerate(weights):
            if w < 0:
                raise ValueError("weights must be non-negative")
            self._add(i, int(w))
        self._weights = [int(w) for w in weights]

    def _add(self, i: int, delta: int) -> None:
        i += 1
        while i <= self.n:
            self.tree[i] += delta
            i += i & -i

    def update(self, i: int, weight: int) -> None:
        self._add(i, int(weight) - self._weights[i])
        self._weights[i] = int(weight)

    def prefix(self, i: int) -> int:
        """Sum of weights[0:i]."""
        s = 0
        while i > 0:
            s += self.tree[i]
            i -= i & -i
        return s

    @property
    def total(self) -> int:
        return self.prefix(self.n)

    def find(self, v: int) -> int:
        """The index i whose interval [prefix(i), prefix(i+1)) contains ``v`` (0 <= v < total), in O(log m)."""
        if not 0 <= v < self.total:
            raise ValueError(f"value {v} outside [0, {self.total})")
        pos, step = 0, 1 << self.n.bit_length()
        while step:
            nxt = pos + step
            if nxt <= self.n and self.tree[nxt] <= v:
                pos = nxt
                v -= self.tree[nxt]
            step >>= 1
        return pos  # 0-based index of the interval


class _Classes:
    """Items grouped by label into contiguous blocks (so "uniform item outside class i" is O(1))."""

    def __init__(self, labels: Sequence):
        groups: dict = defaultdict(list)
        for idx, lab in enumerate(labels):
            groups[lab].append(idx)
        self.labels = list(groups)
        self.members = [np.asarray(groups[k], dtype=np.int64) for k in self.labels]
        self.sizes = np.array([len(m) for m in self.members], dtype=np.int64)
        self.order = np.concatenate(self.members) if self.members else np.zeros(0, np.int64)
        self.start = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)
        self.N = int(self.sizes.sum())

    def other(self, ci: int, rng: np.random.Generator) -> int:
        r = int(rng.integers(self.N - self.sizes[ci]))
        if r >= self.start[ci]:
            r += int(self.sizes[ci])
        return int(self.order[r])

    def two(self, ci: int, rng: np.random.Generator) -> tuple[int, int]:
        n = int(self.sizes[ci])
        a = int(rng.integers(n))
        b = int(rng.integers(n - 1))
        if b >= a:
            b += 1
        m = self.members[ci]
        return int(m[a]), int(m[b])

    def one(self, ci: int, rng: np.random.Generator) -> int:
        return int(self.members[ci][rng.integers(self.sizes[ci])])


class UniformTripletSampler:
    """Uniformly random triplets (anchor, positive, negative) over item indices ``0..len(labels)-1``."""

    def __init__(self, labels: Sequence, seed: int | None = 0, weighting: str = "exact"):
        self.c = _Classes(labels)
        n, N = self.c.sizes, self.c.N
        pairs = n * (n - 1) // 2
        if weighting == "exact":
            w = pairs * (N - n)
        elif weighting == "study":
            w = pairs * (N > n)
        else:
            raise ValueError(f"unknown weighting {weighting!r}")
        self.tree = FenwickTree(w.tolist())
        if self.tree.total == 0:
            raise ValueError("no triplet exists: need a class with two items and another class")
        self.rng = np.random.default_rng(seed)
        self.total_triplets = int((pairs * (N - n)).sum())

    def sample(self) -> tuple[int, int, int]:
        ci = self.tree.find(int(self.rng.integers(self.tree.total)))
        a, p = self.c.two(ci, self.rng)
        return a, p, self.c.other(ci, self.rng)

    def sample_batch(self, k: int) -> np.ndarray:
        return np.array([self.sample() for _ in range(k)], dtype=np.int64).reshape(k, 3)


class UniformPairSampler:
    """Uniformly random same pairs and different pairs; ``positive_fraction`` of the draws are same pairs."""

    def __init__(self, labels: Sequence, seed: int | None = 0, positive_fraction: float = 0.5):
        self.c = _Classes(labels)
        n, N = self.c.sizes, self.c.N
        self.pos = FenwickTree((n * (n - 1) // 2).tolist())
        self.neg = FenwickTree((n * (N - n)).tolist())
        if self.pos.total == 0 or self.neg.total == 0:
            raise ValueError("need at least one class with two items and two classes")
        self.positive_fraction = positive_fraction
        self.rng = np.random.default_rng(seed)

    def sample_positive(self) -> tuple[int, int]:
        ci = self.pos.find(int(self.rng.integers(self.pos.total)))
        return self.c.two(ci, self.rng)

    def sample_negative(self) -> tuple[int, int]:
        ci = self.neg.find(int(self.rng.integers(self.neg.total)))
        return self.c.one(ci, self.rng), self.c.other(ci, self.rng)

    def sample(self) -> tuple[int, int, int]:
        """(i, j, same) with same in {0, 1}."""
        if self.rng.random() < self.positive_fraction:
            return (*self.sample_positive(), 1)
        return (*self.sample_negative(), 0)

    def sample_batch(self, k: int) -> np.ndarray:
        return np.array([self.sample() for _ in range(k)], dtype=np.int64).reshape(k, 3)
