"""How long `analyze` takes on CPU for a few thousand faces, with the study's t-SNE settings and faster ones.

    python -m bench.analysis_speed [--faces 1000 3000] [--people 12] [--threads 1] [--json PATH]

Synthetic unit embeddings (clusters with some overlap), 128-d. One row per setting: wall and CPU seconds of
the whole analysis, wall seconds of t-SNE alone, and the iterations t-SNE ran before it stopped. The first
``--settings`` entry (the study's perplexity 150, 5000 iterations) is the baseline of the comparisons.
On a shared machine the CPU seconds are the number to compare.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bench.common import Result, add_json_option, main_with_result, sig
from iznet.sizes import EMBEDDING_DIM

NAME, TITLE = "analysis_speed", "Analysis (t-SNE, boxplots, medoids): the study's t-SNE settings vs faster ones"


def data(n: int, people: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(people, EMBEDDING_DIM))
    lab = rng.integers(0, people, n)
    x = c[lab] / np.sqrt(EMBEDDING_DIM) + rng.normal(size=(n, EMBEDDING_DIM)) * 0.06
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), lab.astype(str)


def run(args: argparse.Namespace) -> Result:
    from training.analysis import analyze

    res = Result(NAME, TITLE)
    for n in args.faces:
        x, y = data(n, args.people)
        cpu_s = {}
        for s in args.settings:
            perp, iters = s.split(":")
            t, c = time.perf_counter(), time.process_time()
            r = analyze(x, y, perplexity=float(perp), iterations=int(iters), threads=args.threads)
            total, cpu_s[s] = time.perf_counter() - t, time.process_time() - c
            res.row(faces=n, perplexity=sig(r.tsne.perplexity, 3), max_iter=int(iters), wall_s=sig(total, 3),
                    cpu_s=sig(cpu_s[s], 3), tsne_s=sig(r.timings["tsne"], 3), iters_run=r.tsne.iterations)
            print(res.rows[-1], flush=True)
        base = args.settings[0]
        for s in args.settings[1:]:
            res.compare(f"analyze {n:,} faces", "CPU s", f"t-SNE {base}", f"t-SNE {s}", cpu_s[base], cpu_s[s], "lower")
    res.notes.append(f"{args.people} synthetic people, {args.threads} thread(s); settings are perplexity:iterations "
                     "(the perplexity is capped for small sets).")
    return res


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faces", type=int, nargs="+", default=[1000, 3000], help="Numbers of faces.")
    ap.add_argument("--people", type=int, default=12, help="Synthetic people.")
    ap.add_argument("--threads", type=int, default=1, help="Threads for t-SNE.")
    ap.add_argument("--settings", nargs="+", default=["150:5000", "30:1000"],
                    help="perplexity:iterations pairs to compare; the first is the baseline")
    add_json_option(ap)
    return ap


def main(argv: list[str] | None = None) -> Result:
    return main_with_result(run, parser(), argv, NAME, TITLE)


if __name__ == "__main__":
    main()
