"""FAISS search over exemplar vectors: exact inner product for small galleries, IVF past a size.

Vectors are L2-normalised, so inner product is cosine similarity and ``distance = sqrt(2 - 2 * score)`` is
the Euclidean distance between them. The switch-over size :data:`APPROX_FROM` and the approximate kind
:data:`APPROX_KIND` were chosen by measurement (``python -m bench.gallery_index``; table in docs/gallery.md):
below 50,000 exemplars the exact ``IndexFlatIP`` costs under ~10 ms a query (nothing next to detection) and
is exact; at 50,000 it costs ~27 ms, IVF ~8 ms with recall@1 1.000 against exact search, and IVF builds 4x
faster than HNSW (the gallery rebuilds its index at every saved edit). ``hnsw`` stays available.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from iznet.errors import UserInputError
from iznet.sizes import EMBEDDING_DIM

#: Galleries with at least this many exemplars get an approximate index ("auto"); smaller ones exact search.
APPROX_FROM = 50_000
APPROX_KIND = "ivf"
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 40
HNSW_EF_SEARCH = 64
#: IVF: lists ~ 4 sqrt(N), probing 1/8 of them (at least 8).
IVF_PROBE_SHARE = 8
KINDS = ("auto", "flat", "hnsw", "ivf")


def _faiss():
    import faiss

    return faiss


def choose_kind(kind: str, n: int) -> str:
    if kind not in KINDS:
        raise UserInputError(f"unknown index kind {kind!r}: choose one of {', '.join(KINDS)}")
    if kind == "auto":
        return APPROX_KIND if n >= APPROX_FROM else "flat"
    return kind


def build_index(vectors: np.ndarray, ids: np.ndarray, kind: str = "auto", ef_search: int = HNSW_EF_SEARCH):
    """A FAISS index over ``vectors`` (N, D) whose search returns ``ids`` (int64 exemplar ids)."""
    faiss = _faiss()
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    dim = vectors.shape[1] if vectors.ndim == 2 and vectors.shape[1] else EMBEDDING_DIM
    kind = choose_kind(kind, len(vectors))
    if kind == "flat":
        base = faiss.IndexFlatIP(dim)
    elif kind == "ivf":
        nlist = max(1, min(len(vectors) // 39, int(4 * np.sqrt(max(1, len(vectors))))))
        quantizer = faiss.IndexFlatIP(dim)
        base = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        if len(vectors):
            base.train(vectors)
        base.nprobe = min(nlist, max(8, nlist // IVF_PROBE_SHARE))
    else:
        base = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        base.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        base.hnsw.efSearch = ef_search
    index = faiss.IndexIDMap2(base)
    if len(vectors):
        index.add_with_ids(vectors, np.ascontiguousarray(ids, dtype=np.int64))
    return index


def index_kind(index) -> str:
    faiss = _faiss()
    base = faiss.downcast_index(index.index) if hasattr(index, "index") else index
    if isinstance(base, faiss.IndexHNSW):
        return "hnsw"
    return "ivf" if isinstance(base, faiss.IndexIVF) else "flat"


def search(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids), each (Q, k); missing neighbours have id -1 and score -inf."""
    queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
    if index.ntotal == 0 or len(queries) == 0:
        return np.full((len(queries), k), -np.inf, np.float32), np.full((len(queries), k), -1, np.int64)
    scores, ids = index.search(queries, k)
    scores = np.where(ids < 0, -np.inf, scores)
    return scores.astype(np.float32), ids


def write_index(index, path: Path) -> None:
    _faiss().write_index(index, str(path))


def read_index(path: Path):
    return _faiss().read_index(str(path))


def distance(score: float) -> float:
    """Euclidean distance between two unit vectors whose inner product is ``score``."""
    return float(np.sqrt(max(0.0, 2.0 - 2.0 * float(score))))
