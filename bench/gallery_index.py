"""Gallery search by size: exact (IndexFlatIP) against approximate (IVF-PQ with exact re-ranking, the default;
IVF-Flat; HNSW where it builds in reasonable time), side by side in one run: ms per query one at a time and in
batches (``--batch``), recall@1 against exact, build time, index size.

    python -m bench.gallery_index [--sizes 1000,10000,100000,1000000] [--queries 300] [--hnsw-max 10000]

Vectors imitate face embeddings: 128-d unit vectors scattered around per-person centres (5 exemplars each,
so 1M vectors are 200,000 synthetic people), made in chunks so 1M stays well under a gigabyte beside its
indexes. Queries are new samples of enrolled people, searched one at a time (a Label call searches a photo's
few faces at once: the batched column), with ``--threads`` FAISS threads. Recall@1 is the share of queries
whose nearest exemplar is the exact one. The indexes are the gallery's own
(:func:`iznet.gallery.index.build_index`); the gallery switches to ``APPROX_KIND`` at ``APPROX_FROM``
exemplars, chosen from this table (docs/gallery.md). HNSW is skipped past ``--hnsw-max`` vectors: its build
is the slow part. Index size is FAISS's serialised index (what the gallery writes as index.faiss).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bench.common import Result, add_json_option, main_with_result, sig
from iznet.sizes import EMBEDDING_DIM

NAME, TITLE = "gallery_index", "Gallery search: exact vs approximate (IVF, HNSW) by gallery size"
PER_PERSON = 5


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def clustered_vectors(n: int, queries: int, spread: float, rng: np.random.Generator,
                      chunk: int = 100_000) -> tuple[np.ndarray, np.ndarray]:
    """(n, d) exemplars around n/5 person centres and (queries, d) new samples of random enrolled people, with d
    the embedding size."""
    d = EMBEDDING_DIM
    people = max(1, n // PER_PERSON)
    centres = unit(rng.standard_normal((people, d), dtype=np.float32))
    vecs = np.empty((n, d), np.float32)
    for s in range(0, n, chunk):  # float32 chunks: no float64 copy of the whole gallery
        idx = np.arange(s, min(n, s + chunk)) // PER_PERSON
        vecs[s:s + len(idx)] = unit(centres[idx] + spread * rng.standard_normal((len(idx), d), dtype=np.float32))
    who = rng.integers(0, people, queries)
    return vecs, unit(centres[who] + spread * rng.standard_normal((queries, d), dtype=np.float32))


def time_queries(index, queries: np.ndarray, batch: int = 1) -> tuple[float, np.ndarray]:
    """(queries per second, top-1 ids), ``batch`` queries per search call."""
    from iznet.gallery import index as idx

    idx.search(index, queries[:5], 1)  # warm up
    t0 = time.perf_counter()
    found = np.concatenate([idx.search(index, queries[s:s + batch], 1)[1][:, 0]
                            for s in range(0, len(queries), batch)])
    return len(queries) / (time.perf_counter() - t0), found


def run(args: argparse.Namespace) -> Result:
    import faiss

    from iznet.gallery import index as idx

    faiss.omp_set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    res = Result(NAME, TITLE)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    for n in [int(s) for s in args.sizes.split(",")]:
        t0 = time.perf_counter()
        vecs, queries = clustered_vectors(n, args.queries, args.spread, rng)
        print(f"{n:,} vectors generated in {time.perf_counter() - t0:.1f} s", flush=True)
        ids = np.arange(n, dtype=np.int64)
        exact_qps, exact_found = None, None
        for kind in ["flat", *[k for k in kinds if k != "flat"]]:
            if kind == "hnsw" and n > args.hnsw_max:
                res.row(vectors=n, index=kind, status=f"skipped: HNSW builds too slowly past --hnsw-max "
                                                       f"{args.hnsw_max:,} vectors")
                continue
            t0 = time.perf_counter()
            index = idx.build_index(vecs, ids, kind)
            build = time.perf_counter() - t0
            qps, found = time_queries(index, queries)
            bqps, bfound = time_queries(index, queries, args.batch)
            if kind == "flat":
                exact_qps, exact_found = qps, found
            recall = float(np.mean(found == exact_found))
            size_mb = len(faiss.serialize_index(index)) / 2**20
            detail = ""
            if kind == "ivf":
                base = faiss.downcast_index(index.index)
                detail = f"nlist {base.nlist}, nprobe {base.nprobe}"
            elif idx.index_kind(index) == "ivfpq":
                ref = faiss.downcast_index(index.index)
                ivf = faiss.extract_index_ivf(ref.base_index)
                detail = f"IVF{ivf.nlist},PQ{idx.IVFPQ_PQ_M}x4fs + exact re-rank x{ref.k_factor:g}, nprobe {ivf.nprobe}"
            elif kind == "hnsw":
                base = faiss.downcast_index(index.index)
                detail = f"M {idx.HNSW_M}, efSearch {base.hnsw.efSearch}"
            res.row(vectors=n, index=idx.index_kind(index), status="ok", settings=detail, build_s=sig(build, 3),
                    index_mb=sig(size_mb, 3), queries_per_s=sig(qps, 3), ms_per_query=sig(1000 / qps, 3),
                    ms_per_query_batched=sig(1000 / bqps, 3), recall_at_1=round(recall, 4),
                    recall_at_1_batched=round(float(np.mean(bfound == exact_found)), 4))
            print(f"  {kind}: build {build:.2f} s, {qps:.0f} q/s, batched {bqps:.0f} q/s, recall@1 {recall:.3f}",
                  flush=True)
            if kind != "flat":
                res.compare(f"search {n:,} vectors", "queries/s", "exact (flat)", kind, exact_qps, qps)
            del index
        del vecs, queries
    res.notes.append(f"{args.queries} queries, one per call (ms_per_query) and {args.batch} per call "
                     f"(ms_per_query_batched: a photo's faces go together), {args.threads} FAISS thread(s); recall@1 "
                     f"against exact search; noise {args.spread} around each person's centre. The gallery picks "
                     f"{idx.APPROX_KIND} from {idx.APPROX_FROM:,} exemplars, flat below.")
    return res


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000,100000,1000000", help="Gallery sizes (vectors), comma-separated.")
    ap.add_argument("--kinds", default="ivfpq,ivf,hnsw", help="Approximate indexes to compare with exact search.")
    ap.add_argument("--batch", type=int, default=16, help="Queries per call in the batched column.")
    ap.add_argument("--hnsw-max", type=int, default=10_000, help="Skip HNSW above this many vectors (slow build).")
    ap.add_argument("--queries", type=int, default=300, help="Queries per index.")
    ap.add_argument("--threads", type=int, default=1, help="FAISS threads.")
    ap.add_argument("--spread", type=float, default=0.06, help="Per-exemplar noise around a person's centre.")
    ap.add_argument("--seed", type=int, default=0)
    add_json_option(ap)
    return ap


def main(argv: list[str] | None = None) -> Result:
    return main_with_result(run, parser(), argv, NAME, TITLE)


if __name__ == "__main__":
    main()
