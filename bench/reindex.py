"""How long a gallery re-index takes as a job, and its throughput, next to the same re-index run directly.

    python -m bench.reindex --exemplars 10000            # prints a table and writes bench/results/reindex.json

Builds a gallery of N exemplars (stored 128x128 crops of generated people, vectors from ``baseline-pixels``),
starts a real redis-server and one Celery worker (-c 1), submits ``reindex`` to ``baseline-lbp`` and follows
it to the end; then (``--direct``, default on) re-indexes a copy of the same gallery in-process with
:func:`iznet.gallery.reindex`, so the queue's overhead shows as a ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

import numpy as np


def build_gallery(store: Path, name: str, n: int, model: str, seed: int = 0) -> float:
    from iznet.gallery import GalleryStore, make_embedder
    from iznet.synthetic import draw_face, make_person

    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    people = [make_person(rng, f"P{i:03d}") for i in range(max(1, n // 50))]
    emb = make_embedder(model)
    gs = GalleryStore(store)
    g = gs.create(name, emb.version)
    per = n // len(people)
    for k, p in enumerate(people):
        base = [draw_face(p, rng, 128) for _ in range(3)]
        count = per + (n - per * len(people) if k == 0 else 0)
        crops = [np.clip(np.roll(base[i % 3], (i // 3) % 9 - 4, axis=1).astype(np.int16) + (i % 13) - 6, 0, 255)
                 .astype(np.uint8) for i in range(count)]
        g.add_exemplars(p.name, emb.embed(crops), crops)
    gs.save(g, action="enroll")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--exemplars", type=int, default=10_000, help="Exemplars in the gallery.")
    ap.add_argument("--batch-size", type=int, default=256, help="Exemplars per re-index batch.")
    ap.add_argument("--from-model", default="baseline-pixels", help="Model the gallery is built with.")
    ap.add_argument("--to-model", default="baseline-lbp", help="Model it is re-indexed to.")
    ap.add_argument("--no-direct", action="store_true", help="Skip the in-process comparison.")
    ap.add_argument("--out", default="bench/results/reindex.json", help="Where to write the numbers (JSON).")
    args = ap.parse_args()

    from training.jobs.client import Jobs
    from training.jobs.local import start_redis, start_worker

    tmp = Path(tempfile.mkdtemp(prefix="iznet-bench-reindex-"))
    store = tmp / "store"
    print(f"building a gallery of {args.exemplars} exemplars in {store} ...", flush=True)
    build_s = build_gallery(store, "bench", args.exemplars, args.from_model)
    print(f"  built in {build_s:.1f}s", flush=True)
    if not args.no_direct:
        shutil.copytree(store, tmp / "direct")

    redis_proc, url = start_redis(data_dir=tmp / "redis")
    env = {"IZNET_STORE": str(store), "OMP_NUM_THREADS": "1", "IZNET_REDIS_URL": url}
    worker = start_worker(url, queues="cpu", env=env, log=tmp / "worker.log")
    try:
        jobs = Jobs(url, store)
        t0 = time.perf_counter()
        job_id, _ = jobs.submit("reindex", {"gallery": "bench", "model": args.to_model, "batch_size": args.batch_size})
        last = None
        for st in jobs.follow(job_id, poll=1.0):
            p = st.get("progress") or {}
            if p.get("total") and p.get("done") != last:
                last = p.get("done")
                print(f"  {p['done']}/{p['total']} exemplars, {p.get('rate')}/s, ETA {p.get('eta_s')}s", flush=True)
        wall = time.perf_counter() - t0
        if st["state"] != "SUCCESS":
            raise SystemExit(f"re-index job ended {st['state']}: {st.get('error')}")
        m = st["metrics"]
        result = {"exemplars": m["exemplars"], "batch_size": args.batch_size, "from": args.from_model,
                  "to": args.to_model, "job_seconds": m["seconds"], "job_exemplars_per_s": m["exemplars_per_s"],
                  "submit_to_done_seconds": round(wall, 2), "gallery_build_seconds": round(build_s, 1),
                  "cpu_count": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 1)}
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        redis_proc.kill()

    if not args.no_direct:
        from iznet.gallery import GalleryStore, make_embedder, reindex

        t0 = time.perf_counter()
        reindex(GalleryStore(tmp / "direct"), "bench", make_embedder(args.to_model), batch=args.batch_size)
        direct = time.perf_counter() - t0
        result.update(direct_seconds=round(direct, 2), direct_exemplars_per_s=round(args.exemplars / direct, 1),
                      job_over_direct=round(result["submit_to_done_seconds"] / direct, 2))
    shutil.rmtree(tmp, ignore_errors=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
