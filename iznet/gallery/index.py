"""FAISS search over exemplar vectors: exact inner product for small galleries, IVF-PQ + exact re-ranking past
a size.

Vectors are L2-normalised, so inner product is cosine similarity and ``distance = sqrt(2 - 2 * score)`` is
the Euclidean distance between them. The switch-over size :data:`APPROX_FROM` and the approximate kind
:data:`APPROX_KIND` were chosen by measurement (``python -m bench.gallery_index``; table in docs/gallery.md).

``ivfpq`` (the approximate default): ``IVF{N/4000},PQ32x4fs`` with an exact re-ranking (``IndexRefineFlat``):
the coarse lists cut the scan to the ``nprobe`` nearest half of them, 4-bit product-quantised codes (16 bytes
a vector) are scanned with FAISS's SIMD "fast scan", and the ``REFINE_K_FACTOR`` x k best are re-scored
exactly, so the scores a gallery thresholds are exact inner products. At 1M vectors on one thread: 1.1 ms a
single query, 0.5 ms a query in batches of 16, recall@1 1.000 against exact search, built in 5 s (IVF-Flat
with 4,000 lists and nprobe 500: ~10 ms a query, 300 s to build; HNSW: see the table). ``ivf`` (IVF-Flat)
and ``hnsw`` stay available.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from iznet.errors import UserInputError
from iznet.sizes import EMBEDDING_DIM

#: Galleries with at least this many exemplars get an approximate index ("auto"); smaller ones exact search.
APPROX_FROM = 50_000
APPROX_KIND = "ivfpq"
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 40
HNSW_EF_SEARCH = 64
#: IVF: lists ~ 4 sqrt(N), probing 1/8 of them (at least 8).
IVF_PROBE_SHARE = 8
#: ivfpq: one coarse list per IVFPQ_LIST_SIZE vectors, probing the nearest half of them but at least
#: IVFPQ_MIN_PROBE, PQ with IVFPQ_PQ_M 4-bit sub-quantizers, the best REFINE_K_FACTOR x k re-scored exactly.
#: Measured (bench/gallery_index.py's vectors, 1,000 queries, one thread): at 1M (256 lists) probing 1/4 of the
#: lists gives recall@1 0.972, 3/8 0.994, 1/2 1.000; fewer lists need a larger share (75 lists at 300k: 1/2
#: 0.991, 3/4 0.999; 25 at 100k: 1/2 0.976, 3/4 0.999; 12 at 50k: 1/2 0.937, all 1.000), hence the floor.
#: k_factor 4 loses 4% of the first neighbours, 8 none; PQ64 scans twice as long for nothing, PQ16 loses 1-4%.
IVFPQ_LIST_SIZE = 4000
IVFPQ_PROBE = 0.5
IVFPQ_MIN_PROBE = 48
IVFPQ_PQ_M = 32
REFINE_K_FACTOR = 8
#: Fewer vectors than this cannot train the 16-centroid sub-quantizers well: such a gallery is searched exactly.
IVFPQ_MIN_TRAIN = 1024
#: Vectors the coarse quantizer and the PQ are trained on (a seeded sample of the gallery).
IVFPQ_TRAIN_SAMPLE = 50_000
KINDS = ("auto", "flat", "hnsw", "ivf", "ivfpq")


def _faiss():
    import faiss

    return faiss


def choose_kind(kind: str, n: int) -> str:
    if kind not in KINDS:
        raise UserInputError(f"unknown index kind {kind!r}: choose one of {', '.join(KINDS)}")
    if kind == "auto":
        kind = APPROX_KIND if n >= APPROX_FROM else "flat"
    if kind == "ivfpq" and n < IVFPQ_MIN_TRAIN:
        return "flat"
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
    elif kind == "ivfpq":
        base = _ivfpq(faiss, vectors, dim)
    else:
        base = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        base.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        base.hnsw.efSearch = ef_search
    index = faiss.IndexIDMap2(base)
    if len(vectors):
        index.add_with_ids(vectors, np.ascontiguousarray(ids, dtype=np.int64))
    return index


def ivfpq_lists(n: int) -> tuple[int, int]:
    """(nlist, nprobe) of the ``ivfpq`` index for ``n`` vectors."""
    nlist = max(1, n // IVFPQ_LIST_SIZE)
    return nlist, min(nlist, max(IVFPQ_MIN_PROBE, int(np.ceil(nlist * IVFPQ_PROBE))))


def _ivfpq(faiss, vectors: np.ndarray, dim: int):
    """IVF + 4-bit fast-scan PQ, re-ranked exactly (trained here on a seeded sample of ``vectors``)."""
    nlist, nprobe = ivfpq_lists(len(vectors))
    inner = faiss.index_factory(dim, f"IVF{nlist},PQ{IVFPQ_PQ_M}x4fs", faiss.METRIC_INNER_PRODUCT)
    sample = vectors
    if len(vectors) > IVFPQ_TRAIN_SAMPLE:
        pick = np.random.default_rng(0).choice(len(vectors), IVFPQ_TRAIN_SAMPLE, replace=False)
        sample = vectors[np.sort(pick)]
    inner.train(sample)
    faiss.extract_index_ivf(inner).nprobe = nprobe
    base = faiss.IndexRefineFlat(inner)  # faiss's wrapper keeps a reference to ``inner``
    base.k_factor = REFINE_K_FACTOR
    return base


def index_kind(index) -> str:
    faiss = _faiss()
    base = faiss.downcast_index(index.index) if hasattr(index, "index") else index
    if isinstance(base, faiss.IndexRefine):
        return "ivfpq"
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
