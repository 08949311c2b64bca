"""The metric the study lacked: face verification and identification on L2-normalised embeddings.

* :func:`kfold_accuracy` LFW protocol: for each fold, the distance threshold that maximises accuracy on the
  *other* folds is applied to this fold; report mean and std of the per-fold accuracies.
* :func:`roc` / :func:`auc` ROC of "same person" scored by -distance; :func:`tar_at_far` the true accept rate at
  a false accept rate (interpolated on the ROC, conservative: threshold chosen so FAR <= target).
* :func:`rank1_identification` nearest-neighbour identification of probes against a gallery.
"""

from __future__ import annotations

import numpy as np


def pair_distances(emb1: np.ndarray, emb2: np.ndarray) -> np.ndarray:
    """Squared Euclidean distance per row (0..4 for unit vectors)."""
    d = np.asarray(emb1, np.float64) - np.asarray(emb2, np.float64)
    return (d * d).sum(1)


def _best_threshold(dist: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """Threshold t (predict same iff dist < t) maximising accuracy; returns (t, accuracy)."""
    order = np.argsort(dist, kind="stable")
    d, s = dist[order], same[order].astype(np.int64)
    n = len(d)
    # predicting the first k (smallest distances) as "same": correct = same in first k + different after k
    tp = np.concatenate([[0], np.cumsum(s)])
    tn_after = (1 - s).sum() - np.concatenate([[0], np.cumsum(1 - s)])
    correct = tp + tn_after
    # only cut between distinct distances
    valid = np.ones(n + 1, bool)
    valid[1:n] = d[1:] > d[:-1]
    correct = np.where(valid, correct, -1)
    k = int(np.argmax(correct))
    if k == 0:
        t = d[0] - 1e-6
    elif k == n:
        t = d[-1] + 1e-6
    else:
        t = (d[k - 1] + d[k]) / 2
    return float(t), float(correct[k] / n)


def kfold_accuracy(dist: np.ndarray, same: np.ndarray, folds: np.ndarray | int = 10) -> dict:
    """LFW protocol accuracy. ``folds`` is a fold id per pair, or a number of contiguous folds to make."""
    dist, same = np.asarray(dist, np.float64), np.asarray(same).astype(bool)
    if np.isscalar(folds):
        folds = stratified_folds(same, int(folds))
    folds = np.asarray(folds)
    accs, thresholds = [], []
    for f in np.unique(folds):
        test = folds == f
        train = ~test
        if not train.any():  # a single fold: threshold from the fold itself (optimistic, said in the name)
            train = test
        t, _ = _best_threshold(dist[train], same[train])
        accs.append(float(((dist[test] < t) == same[test]).mean()))
        thresholds.append(t)
    return {"accuracy": float(np.mean(accs)), "accuracy_std": float(np.std(accs)), "fold_accuracies": accs,
            "thresholds": thresholds, "threshold": float(np.mean(thresholds)), "folds": int(len(accs))}


def stratified_folds(same: np.ndarray, k: int = 10) -> np.ndarray:
    """Fold ids 0..k-1 assigned in order within the same pairs and within the different pairs, so each fold
    keeps the file's balance (LFW files list a fold's same pairs, then its different pairs)."""
    same = np.asarray(same).astype(bool)
    folds = np.zeros(len(same), np.int64)
    for cls in (True, False):
        idx = np.flatnonzero(same == cls)
        folds[idx] = np.arange(len(idx)) * k // max(1, len(idx))
    return folds


def roc(dist: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(far, tar, thresholds): accept iff dist <= threshold, thresholds ascending over distinct distances."""
    dist, same = np.asarray(dist, np.float64), np.asarray(same).astype(bool)
    order = np.argsort(dist, kind="stable")
    d, s = dist[order], same[order]
    npos, nneg = max(1, s.sum()), max(1, (~s).sum())
    tp, fp = np.cumsum(s), np.cumsum(~s)
    last = np.r_[d[1:] > d[:-1], True]  # end of each run of equal distances
    far = np.r_[0.0, fp[last] / nneg]
    tar = np.r_[0.0, tp[last] / npos]
    thr = np.r_[d[0] - 1e-9 if len(d) else 0.0, d[last]]
    return far, tar, thr


def auc(far: np.ndarray, tar: np.ndarray) -> float:
    return float(np.trapezoid(tar, far)) if hasattr(np, "trapezoid") else float(np.trapz(tar, far))


def tar_at_far(far: np.ndarray, tar: np.ndarray, target: float = 1e-3) -> float:
    """Highest TAR among operating points with FAR <= target (no interpolation past the data)."""
    ok = far <= target + 1e-12
    return float(tar[ok].max()) if ok.any() else 0.0


def verification_report(dist: np.ndarray, same: np.ndarray, folds: np.ndarray | int = 10,
                        far_target: float = 1e-3) -> dict:
    """Everything `iznet evaluate` prints for a pairs file."""
    dist, same = np.asarray(dist, np.float64), np.asarray(same).astype(bool)
    acc = kfold_accuracy(dist, same, folds)
    far, tar, thr = roc(dist, same)
    npos, nneg = int(same.sum()), int((~same).sum())
    return {**acc, "auc": auc(far, tar), "tar_at_far": tar_at_far(far, tar, far_target), "far_target": far_target,
            "pairs": int(len(dist)), "same_pairs": npos, "different_pairs": nneg,
            "far_resolution": 1.0 / max(1, nneg),
            "mean_distance_same": float(dist[same].mean()) if npos else None,
            "mean_distance_different": float(dist[~same].mean()) if nneg else None,
            "roc": {"far": far.tolist(), "tar": tar.tolist(), "threshold": thr.tolist()}}


def rank1_identification(gallery: np.ndarray, gallery_labels, probes: np.ndarray, probe_labels) -> dict:
    """Nearest gallery vector's label vs the probe's label (cosine = Euclidean order for unit vectors)."""
    g, p = np.asarray(gallery, np.float32), np.asarray(probes, np.float32)
    gl, pl = np.asarray(gallery_labels), np.asarray(probe_labels)
    if len(g) == 0 or len(p) == 0:
        return {"rank1": None, "probes": int(len(p)), "gallery": int(len(g))}
    nn = np.argmax(p @ g.T, axis=1)
    correct = gl[nn] == pl
    return {"rank1": float(correct.mean()), "probes": int(len(p)), "gallery": int(len(g)),
            "identities": int(len(set(gl.tolist())))}


def gallery_probe_split(labels, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """For identities with >= 2 items: one random item to the gallery, the rest are probes. Indices."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    gal, probe = [], []
    for lab in np.unique(labels):
        idx = np.flatnonzero(labels == lab)
        if len(idx) < 2:
            continue
        idx = rng.permutation(idx)
        gal.append(idx[0])
        probe.extend(idx[1:].tolist())
    return np.asarray(gal, np.int64), np.asarray(probe, np.int64)
