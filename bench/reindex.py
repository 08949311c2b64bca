"""How long a gallery re-index takes as a job, and its throughput, next to the same re-index run directly.

    python -m bench.reindex --exemplars 10000 [--json PATH]

Builds a gallery of N exemplars (stored 128x128 crops of generated people, vectors from ``baseline-pixels``),
starts a real redis-server and one Celery worker (-c 1), submits ``reindex`` to ``baseline-lbp`` and follows
it to the end; then (unless ``--no-direct``) re-indexes a copy of the same gallery in-process with
:func:`iznet.gallery.reindex`, so the queue's overhead shows as a ratio.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import Result, Skip, add_json_option, main_with_result, sig

NAME, TITLE = "reindex", "Gallery re-index: as a Celery job vs in-process"


def build_gallery(store: Path, name: str, n: int, model: str, seed: int = 0) -> float:
    from iznet.gallery import GalleryStore
    from iznet.registry import create_embedder
    from iznet.synthetic import draw_face, make_person

    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    people = [make_person(rng, f"P{i:03d}") for i in range(max(1, n // 50))]
    emb = create_embedder(model)
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


def run(args: argparse.Namespace) -> Result:
    from training.jobs.client import Jobs
    from training.jobs.local import redis_server_binary, start_redis, start_worker
    from iznet.errors import PreconditionError

    try:
        redis_server_binary()
    except PreconditionError as e:
        raise Skip(str(e)) from None
    res = Result(NAME, TITLE)
    tmp = Path(tempfile.mkdtemp(prefix="iznet-bench-reindex-"))
    try:
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
            job_id, _ = jobs.submit("reindex", {"gallery": "bench", "model": args.to_model,
                                                "batch_size": args.batch_size})
            last = None
            for st in jobs.follow(job_id, poll=1.0):
                p = st.get("progress") or {}
                if p.get("total") and p.get("done") != last:
                    last = p.get("done")
                    print(f"  {p['done']}/{p['total']} exemplars, {p.get('rate')}/s, ETA {p.get('eta_s')}s", flush=True)
            wall = time.perf_counter() - t0
            if st["state"] != "SUCCESS":
                raise RuntimeError(f"re-index job ended {st['state']}: {st.get('error')}")
            m = st["metrics"]
        finally:
            os.killpg(worker.pid, signal.SIGKILL)
            redis_proc.kill()
        res.row(path="Celery job (submit to done)", exemplars=m["exemplars"], seconds=sig(wall, 3),
                exemplars_per_s=sig(m["exemplars"] / wall, 3), job_own_seconds=sig(m["seconds"], 3))

        if not args.no_direct:
            from iznet.gallery import GalleryStore, reindex
            from iznet.registry import create_embedder

            t0 = time.perf_counter()
            reindex(GalleryStore(tmp / "direct"), "bench", create_embedder(args.to_model), batch=args.batch_size)
            direct = time.perf_counter() - t0
            res.row(path="in-process", exemplars=args.exemplars, seconds=sig(direct, 3),
                    exemplars_per_s=sig(args.exemplars / direct, 3))
            res.compare(f"re-index {args.exemplars:,} exemplars", "seconds", "in-process", "Celery job", direct,
                        wall, "lower")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    res.notes.append(f"{args.from_model} -> {args.to_model}, batches of {args.batch_size}, one worker (-c 1); "
                     f"gallery built in {build_s:.0f} s (not timed above).")
    return res


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--exemplars", type=int, default=10_000, help="Exemplars in the gallery.")
    ap.add_argument("--batch-size", type=int, default=256, help="Exemplars per re-index batch.")
    ap.add_argument("--from-model", default="baseline-pixels", help="Model the gallery is built with.")
    ap.add_argument("--to-model", default="baseline-lbp", help="Model it is re-indexed to.")
    ap.add_argument("--no-direct", action="store_true", help="Skip the in-process comparison.")
    add_json_option(ap)
    return ap


def main(argv: list[str] | None = None) -> Result:
    return main_with_result(run, parser(), argv, NAME, TITLE)


if __name__ == "__main__":
    main()
