"""Exact (IndexFlatIP) against HNSW search, side by side, by gallery size: latency per query and recall@1.

    python -m bench.gallery_index [--sizes 1000,10000,50000,100000] [--queries 300] [--threads 1]

Vectors imitate face embeddings: unit vectors scattered around per-person centres (5 exemplars each), and
queries are new samples of enrolled people. Recall@1 is the share of queries whose HNSW nearest exemplar is
the exact one. The gallery switches to HNSW at ``iznet.gallery.index.HNSW_FROM`` exemplars, chosen from this
table (docs/gallery.md).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1000,10000,50000,100000")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--spread", type=float, default=0.06, help="per-exemplar noise around a person's centre")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    import faiss

    from iznet.gallery import index as idx

    faiss.omp_set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    rows = []
    print(f"{'exemplars':>10} {'index':>6} {'ms/query':>9} {'speed-up':>9} {'recall@1':>9} {'build s':>8}")
    for n in [int(s) for s in args.sizes.split(",")]:
        people = max(1, n // 5)
        centres = unit(rng.standard_normal((people, 128)))
        vecs = unit(centres.repeat(5, axis=0)[:n] + args.spread * rng.standard_normal((n, 128)))
        who = rng.integers(0, people, args.queries)
        queries = unit(centres[who] + args.spread * rng.standard_normal((args.queries, 128)))
        ids = np.arange(n, dtype=np.int64)
        res = {}
        for kind in ("flat", "hnsw", "ivf"):
            t0 = time.perf_counter()
            index = idx.build_index(vecs, ids, kind)
            build = time.perf_counter() - t0
            idx.search(index, queries[:5], 1)  # warm up
            t0 = time.perf_counter()
            found = np.concatenate([idx.search(index, q[None], 5)[1][:, :1] for q in queries])
            ms = (time.perf_counter() - t0) * 1000 / len(queries)
            res[kind] = (ms, found[:, 0], build)
            recall = float(np.mean(res["flat"][1] == found[:, 0]))
            row = {"exemplars": n, "index": kind, "ms_per_query": round(ms, 4),
                   "speedup": round(res["flat"][0] / ms, 2), "recall_at_1": recall, "build_s": round(build, 2)}
            rows.append(row)
            print(f"{n:>10} {kind:>6} {ms:>9.3f} {row['speedup']:>9.2f} {recall:>9.3f} {build:>8.2f}", flush=True)
    print(json.dumps({"threads": args.threads, "queries": args.queries, "rows": rows}))
    return rows


if __name__ == "__main__":
    main()
