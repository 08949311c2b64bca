"""Distances the study read its embeddings by: within each person, and between people's medoids.

* :func:`intra_distances` every pairwise Euclidean distance inside one person's embeddings (the boxplot);
* :func:`medoid_index` the medoid: the member whose summed distance to the others is smallest;
* :func:`medoid_distances` the table of distances between people's medoids (study, Appendix B);
* :func:`nearest_medoid` which medoid each embedding is closest to (the "classification accuracy" the study
  wished it had measured, section 2.3).

All work on plain arrays: ``embeddings`` (N, D) float, ``labels`` (N,) of anything hashable.
"""

from __future__ import annotations

import numpy as np


def pairwise(a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """Euclidean distances between the rows of ``a`` and ``b`` (or ``a`` itself), in float64, never negative."""
    a = np.asarray(a, np.float64)
    b = a if b is None else np.asarray(b, np.float64)
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    d = np.sqrt(np.maximum(sq, 0.0))
    if b is a:
        np.fill_diagonal(d, 0.0)
    return d


def upper(d: np.ndarray) -> np.ndarray:
    """The distances above the diagonal of a square matrix (each unordered pair once)."""
    i, j = np.triu_indices(len(d), k=1)
    return d[i, j]


def medoid_index(x: np.ndarray) -> int:
    """Index (into ``x``) of the medoid: the row with the smallest summed distance to all rows."""
    if len(x) == 0:
        raise ValueError("no embeddings")
    sums = np.concatenate([pairwise(x[s:s + 1024], x).sum(1) for s in range(0, len(x), 1024)])
    return int(np.argmin(sums))


def group_indices(labels) -> tuple[list, list[np.ndarray]]:
    """The distinct labels (sorted by their string form) and the row indices of each."""
    labels = np.asarray(labels)
    people = sorted(set(labels.tolist()), key=str)
    return people, [np.flatnonzero(labels == p) for p in people]


def intra_distances(x: np.ndarray, max_points: int | None = None, rng: np.random.Generator | None = None) -> np.ndarray:
    """All pairwise distances inside one person's embeddings (``max_points`` caps the points used)."""
    if max_points is not None and len(x) > max_points:
        rng = rng or np.random.default_rng(0)
        x = x[np.sort(rng.choice(len(x), max_points, replace=False))]
    return upper(pairwise(x))


def medoid_distances(medoids: np.ndarray) -> np.ndarray:
    """The (P, P) table of distances between medoids."""
    return pairwise(medoids)


def nearest_medoid(x: np.ndarray, medoids: np.ndarray) -> np.ndarray:
    """For each embedding, the index of the closest medoid."""
    return np.argmin(pairwise(x, medoids), axis=1)


def sample_between(x: np.ndarray, labels, n: int, rng: np.random.Generator) -> np.ndarray:
    """Distances of up to ``n`` random pairs of embeddings of different people (with replacement)."""
    labels = np.asarray(labels)
    if len(set(labels.tolist())) < 2 or n <= 0:
        return np.zeros(0)
    i = rng.integers(0, len(x), size=2 * n)
    j = rng.integers(0, len(x), size=2 * n)
    keep = labels[i] != labels[j]
    i, j = i[keep][:n], j[keep][:n]
    x = np.asarray(x, np.float32)
    diff = x[i] - x[j]
    return np.sqrt(np.einsum("ij,ij->i", diff, diff)).astype(np.float64)
