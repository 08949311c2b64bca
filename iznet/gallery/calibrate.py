"""The unknown threshold: the similarity above which a face is named, chosen at a target false-accept rate.

Calibration needs similarity scores of *different-person* pairs (impostors) and, to report the true-accept
rate it buys, of *same-person* pairs. They come from dev verification pairs (an ``iznet data build``
dataset's ``pairs_dev.txt``, or LFW's ``pairs.txt`` over aligned crops), or, when nothing better is given,
from the gallery's own exemplars (every cross-person pair is an impostor pair; marked ``source: "self"``).

The threshold is per comparison of two faces. A probe is compared with every exemplar, so the chance that
*some* exemplar of *someone* passes grows with the gallery: the open-set false-accept rate of a probe is at
most ``exemplars x FAR``. Pick the target with that in mind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import numpy as np

from iznet.errors import PreconditionError, UserInputError
from iznet.sizes import EMBEDDING_DIM

DEFAULT_FAR = 1e-2


def threshold_at_far(genuine: np.ndarray, impostor: np.ndarray, far: float) -> dict[str, Any]:
    """The lowest threshold t with FAR(t) = mean(impostor >= t) <= ``far`` (and the TAR it gives)."""
    if not 0 < far < 1:
        raise UserInputError(f"target false-accept rate {far} must be between 0 and 1")
    impostor = np.sort(np.asarray(impostor, dtype=np.float64))[::-1]
    genuine = np.asarray(genuine, dtype=np.float64)
    n = len(impostor)
    if n == 0:
        raise PreconditionError("cannot calibrate a threshold without different-person pairs")
    allowed = int(np.floor(far * n))  # impostors we may accept
    # Accept exactly the top `allowed` impostors: the threshold sits just above the next one.
    # (Rounded *up* to 6 decimals so the stored number still sits above it.)
    value = float(np.ceil((impostor[allowed] + 1e-7) * 1e6) / 1e6) if allowed < n else -1.0
    achieved = float(np.mean(impostor >= value))
    out = {
        "value": value,
        "far": far,
        "achieved_far": achieved,
        "tar": float(np.mean(genuine >= value)) if len(genuine) else None,
        "genuine_pairs": int(len(genuine)),
        "impostor_pairs": int(n),
    }
    if far * n < 1:
        out["note"] = (f"only {n} different-person pairs: FAR {far:g} cannot be resolved, the threshold is set "
                       f"above every impostor score (needs about {int(np.ceil(1 / far))} pairs)")
    return out


def self_pairs(vectors: np.ndarray, labels: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
    """(genuine, impostor) similarities among a gallery's own exemplars."""
    labels = np.asarray(list(labels))
    if len(labels) < 2:
        return np.zeros(0), np.zeros(0)
    sims = vectors @ vectors.T
    iu = np.triu_indices(len(labels), 1)
    same = labels[iu[0]] == labels[iu[1]]
    s = sims[iu]
    return s[same], s[~same]


def pair_scores(embedder, pairs, faces_dir: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """(genuine, impostor, missing) similarities of verification ``pairs`` whose crops are under ``faces_dir``."""
    from iznet.imageio import read_image

    cache: dict[Path, np.ndarray | None] = {}
    wanted = []
    for p in pairs:
        a, b = p.paths(faces_dir)
        wanted.append((a, b, p.same))
        for path in (a, b):
            if path not in cache:
                cache[path] = None
    paths = [p for p in cache if p.is_file()]
    crops = [read_image(p) for p in paths]
    vecs = embedder.embed(crops) if crops else np.zeros((0, EMBEDDING_DIM), np.float32)
    for p, v in zip(paths, vecs):
        cache[p] = v
    genuine, impostor, missing = [], [], 0
    for a, b, same in wanted:
        va, vb = cache.get(a), cache.get(b)
        if va is None or vb is None:
            missing += 1
            continue
        (genuine if same else impostor).append(float(va @ vb))
    return np.asarray(genuine), np.asarray(impostor), missing


def calibrate_on_pairs(gallery, embedder, pairs, faces_dir: Path, far: float, source: str) -> dict[str, Any]:
    """Set ``gallery``'s unknown threshold from verification ``pairs`` (crops under ``faces_dir``) at target
    ``far``; the caller saves the gallery. Returns the calibration (value, FAR, TAR, pair counts, source)."""
    gallery.check_model(embedder.version)
    genuine, impostor, missing = pair_scores(embedder, pairs, faces_dir)
    result = {**threshold_at_far(genuine, impostor, far), "source": source, "missing_pairs": missing}
    gallery.set_threshold(result)
    gallery.far = far
    return result
