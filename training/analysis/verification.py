"""Verification and identification numbers for the report.

The LFW protocol (k-fold accuracy with the threshold chosen on the other folds, ROC/AUC, TAR at a FAR) lives in
:mod:`iznet.evaluation.verification`; this module only builds the pairs and calls it. What needs no pairs is
computed here: the share of faces whose nearest medoid is their own person's (the "classification accuracy"
the study wished it had).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from iznet.evaluation import verification as metrics
from training.analysis.distances import pairwise

PairIndex = tuple[int, int, int]  # (row a, row b, fold)


def all_pairs(labels, max_same: int = 3000, folds: int = 10, seed: int = 0) -> list[PairIndex]:
    """Balanced pairs among the analysed faces: up to ``max_same`` same-person pairs and as many
    different-person pairs, drawn with a seed, each given a fold. Not identity-disjoint (the folds share
    people), so the report names them "all pairs", never "LFW protocol"."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    same_pairs = []
    for lab in sorted(set(labels.tolist()), key=str):
        idx = np.flatnonzero(labels == lab)
        if len(idx) > 2000:  # enough pairs from a random 2000 of them
            idx = np.sort(rng.choice(idx, 2000, replace=False))
        a, b = np.triu_indices(len(idx), k=1)
        same_pairs.append(np.stack([idx[a], idx[b]], 1))
    same = np.concatenate(same_pairs) if same_pairs else np.zeros((0, 2), np.int64)
    if len(same) == 0 or len(set(labels.tolist())) < 2:
        return []
    same = same[rng.permutation(len(same))[:max_same]]
    diff = np.zeros((0, 2), np.int64)
    while len(diff) < len(same):  # different people: rejection sampling, ends fast unless one person dominates
        c = rng.integers(0, len(labels), size=(4 * len(same), 2))
        c = c[labels[c[:, 0]] != labels[c[:, 1]]]
        diff = np.concatenate([diff, np.sort(c, 1)])
    diff = diff[:len(same)]
    n = len(same)
    return ([(int(a), int(b), k * folds // n) for k, (a, b) in enumerate(same)]
            + [(int(a), int(b), k * folds // n) for k, (a, b) in enumerate(diff)])


def verification_metrics(embeddings: np.ndarray, labels, pairs: list[PairIndex] | None = None,
                         pairs_source: str | None = None, far_target: float = 1e-3, seed: int = 0) -> dict[str, Any]:
    """The verification report (:func:`iznet.evaluation.verification.verification_report`) on ``pairs`` (row
    indices, with folds), or on balanced all-pairs of the analysed faces when no pairs are given; rank-1
    identification with one gallery face per person."""
    labels = np.asarray(labels)
    if pairs is None:
        pairs = all_pairs(labels, seed=seed)
        source = "all pairs of the analysed faces (balanced, seeded; folds share people: not the LFW protocol)"
    else:
        source = pairs_source or "given pairs"
    out: dict[str, Any] = {"available": True, "pairs_source": source}
    if pairs:
        a = np.array([p[0] for p in pairs])
        b = np.array([p[1] for p in pairs])
        folds = np.array([p[2] for p in pairs])
        dist = metrics.pair_distances(embeddings[a], embeddings[b])  # squared Euclidean
        same = labels[a] == labels[b]
        rep = metrics.verification_report(dist, same, folds, far_target)
        rep.pop("roc", None)
        out.update(rep)
    else:
        out["note"] = "no same-person and different-person pairs among these faces"
    g, p = metrics.gallery_probe_split(labels, seed)
    if len(g) and len(p):
        out["identification"] = metrics.rank1_identification(embeddings[g], labels[g], embeddings[p], labels[p])
    return out


def confusion_matrix(embeddings: np.ndarray, labels, people: list, medoids: np.ndarray) -> np.ndarray:
    """``C[a, b]``: how many of person a's embeddings have person b's medoid as their nearest medoid."""
    labels = np.asarray(labels)
    nearest = np.argmin(pairwise(embeddings, medoids), axis=1)
    index = {p: k for k, p in enumerate(people)}
    c = np.zeros((len(people), len(people)), np.int64)
    for lab, n in zip(labels.tolist(), nearest.tolist()):
        c[index[lab], n] += 1
    return c
