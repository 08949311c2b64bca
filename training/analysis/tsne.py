"""t-SNE of embeddings with scikit-learn, the study's way (perplexity 150, 5000 iterations), capped for small sets.

scikit-learn refuses a perplexity at or above the number of points, and its Barnes-Hut method looks at
``3 * perplexity`` neighbours of each point, so the perplexity used is at most ``(n - 1) / 3``. It stops
early when 300 iterations bring no progress, so 5000 is a ceiling, not a cost.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

STUDY_PERPLEXITY = 150.0
STUDY_ITERATIONS = 5000
MIN_ITERATIONS = 250  # scikit-learn's floor


@dataclass(frozen=True)
class TSNEResult:
    points: np.ndarray  # (N, 2)
    perplexity: float  # the one used
    iterations: int  # the ones run (early stopping may end sooner than asked)
    requested_perplexity: float
    requested_iterations: int
    kl_divergence: float

    def summary(self) -> dict:
        d = asdict(self)
        d.pop("points")
        return d


def effective_perplexity(n: int, requested: float) -> float:
    """The perplexity used for ``n`` points: the request, capped at (n - 1) / 3, and at least 1."""
    return float(max(1.0, min(requested, (n - 1) / 3.0)))


def run_tsne(x: np.ndarray, perplexity: float = STUDY_PERPLEXITY, iterations: int = STUDY_ITERATIONS,
             seed: int = 0, init: np.ndarray | None = None, threads: int = 1) -> TSNEResult:
    """2-D t-SNE of the rows of ``x``.

    ``init`` (N, 2) starts from an earlier layout (snapshots use the previous one so that clusters keep their
    place from plot to plot); it is rescaled like scikit-learn's PCA start. Sets of fewer than 4 points get
    a trivial layout. ``threads`` caps the OpenMP/BLAS threads for the run: left uncapped on a busy machine,
    scikit-learn's threads fight each other and the same t-SNE takes ten times longer.
    """
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    x = np.asarray(x, np.float32)
    n = len(x)
    iterations = max(MIN_ITERATIONS, int(iterations))
    if n < 4:
        pts = np.zeros((n, 2), np.float32)
        pts[:, 0] = np.arange(n)
        return TSNEResult(pts, 0.0, 0, float(perplexity), iterations, 0.0)
    perp = effective_perplexity(n, perplexity)
    start: str | np.ndarray = "pca"
    if init is not None and len(init) == n:
        start = np.asarray(init, np.float32) - np.asarray(init, np.float32).mean(0)
        start = start / max(float(np.std(start[:, 0])), 1e-12) * 1e-4
    tsne = TSNE(n_components=2, perplexity=perp, max_iter=iterations, init=start, learning_rate="auto",
                random_state=seed, n_jobs=1)
    with threadpool_limits(limits=max(1, int(threads))):
        pts = tsne.fit_transform(x)
    return TSNEResult(pts.astype(np.float32), perp, int(tsne.n_iter_), float(perplexity), iterations,
                      float(tsne.kl_divergence_))
