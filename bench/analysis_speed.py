"""How long `analyze` takes on CPU for a few thousand faces, with the study's t-SNE settings and faster ones.

    .venv/bin/python bench/analysis_speed.py [--faces 1000 3000] [--people 12] [--threads 1]

Synthetic unit embeddings (clusters with some overlap), 128-d. Prints one line per setting: wall and CPU
seconds of the whole analysis, wall seconds of t-SNE alone, and the iterations t-SNE ran before it stopped.
On a shared machine the CPU seconds are the number to compare.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from training.analysis import analyze


def data(n: int, people: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(people, 128))
    lab = rng.integers(0, people, n)
    x = c[lab] / np.sqrt(128) + rng.normal(size=(n, 128)) * 0.06
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), lab.astype(str)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faces", type=int, nargs="+", default=[1000, 3000])
    ap.add_argument("--people", type=int, default=12)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--settings", nargs="+", default=["150:5000", "30:1000"],
                    help="perplexity:iterations pairs to compare")
    a = ap.parse_args()
    print(f"{'faces':>6} {'perplexity':>10} {'max iter':>8} {'wall s':>8} {'CPU s':>8} {'t-SNE s':>8} {'iters run':>9}")
    for n in a.faces:
        x, y = data(n, a.people)
        for s in a.settings:
            perp, iters = s.split(":")
            t, c = time.perf_counter(), time.process_time()
            r = analyze(x, y, perplexity=float(perp), iterations=int(iters), threads=a.threads)
            total, cpu = time.perf_counter() - t, time.process_time() - c
            print(f"{n:>6} {r.tsne.perplexity:>10.3g} {iters:>8} {total:>8.1f} {cpu:>8.1f} {r.timings['tsne']:>8.1f} "
                  f"{r.tsne.iterations:>9}", flush=True)


if __name__ == "__main__":
    main()
