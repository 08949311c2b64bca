"""Verification and identification numbers for the report, from the recognition code's metrics module.

The LFW protocol (k-fold accuracy with the threshold chosen on the other folds, ROC/AUC, TAR at a FAR) lives in
``iznet.evaluation.verification`` (the recognition issue); this module only builds the pairs and calls it, and
says so plainly when that module is not installed. What needs no pairs is computed here: the share of faces
whose nearest medoid is their own person's (the "classification accuracy" the study wished it had).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from training.analysis.distances import pairwise

PairIndex = tuple[int, int, int]  # (row a, row b, fold)


def metrics_module():
    """``iznet.evaluation.verification`` when present, else None."""
    try:
        from iznet.evaluation import verification
    except ImportError:
        return None
    return verification if hasattr(verification, "verification_report") else None


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
    """The recognition module's verification report on ``pairs`` (row indices, with folds), or on balanced
    all-pairs of the analysed faces when no pairs are given; rank-1 identification with one gallery face per
    person. ``{"available": False, "note": ...}`` when the metrics module is missing."""
    mod = metrics_module()
    if mod is None:
        return {"available": False,
                "note": "verification metrics (k-fold accuracy, ROC/AUC, TAR@FAR, rank-1) come from "
                        "iznet.evaluation.verification (the recognition issue), which is not installed here; "
                        "only the pairs-free numbers are shown"}
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
        d = embeddings[a].astype(np.float64) - embeddings[b].astype(np.float64)
        dist = (d * d).sum(1)  # squared Euclidean, as the recognition module uses
        same = labels[a] == labels[b]
        rep = mod.verification_report(dist, same, folds, far_target)
        rep.pop("roc", None)
        out.update(rep)
    else:
        out["note"] = "no same-person and different-person pairs among these faces"
    if hasattr(mod, "rank1_identification") and hasattr(mod, "gallery_probe_split"):
        g, p = mod.gallery_probe_split(labels, seed)
        if len(g) and len(p):
            out["identification"] = mod.rank1_identification(embeddings[g], labels[g], embeddings[p], labels[p])
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
