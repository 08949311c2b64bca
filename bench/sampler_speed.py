"""Triplet draws per second: the Fenwick-tree uniform sampler (training/samplers.py) against the naive scheme
of the study's Algorithm 1, side by side, by number of classes; with how far each is from uniform.

    python -m bench.sampler_speed [--classes 100,10000,100000] [--seconds 2] [--rounds 3] [--json PATH]

Class sizes are drawn from a Zipf law (exponent ``--zipf`` 2.0, at most ``--max-size`` 530 items): like LFW,
where most people have one photo and a few have hundreds, so the schemes really differ. Three schemes:

* ``naive (Algorithm 1)``: class i then another class j, both uniformly; a uniform pair in C_i and a uniform
  item of C_j. Algorithm 1 does not say what happens when C_i has fewer than two items; here i and j are
  drawn again (rejection), the least a working implementation must do.
* ``fenwick (study weights)``: Algorithm 2 as written: anchor class with probability C(n_i,2)/sum C(n_j,2),
  through the Fenwick tree; a uniform pair, a uniform item outside C_i.
* ``fenwick (exact)``: the default sampler, weights C(n_i,2)(N-n_i): every triplet equally likely.

All three use the same item storage and the same NumPy generator calls (``training.samplers._Classes``), so
the ratio measures the scheme, not the random-number library. "TV from uniform" is the total-variation
distance between the scheme's distribution over all triplets and the uniform one, computed exactly from the
class sizes (0 = uniform; the share of probability mass that sits on the wrong triplets).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter
from math import comb

import numpy as np

from bench.common import Result, add_json_option, main_with_result, sig

NAME, TITLE = "sampler_speed", "Triplet sampler: draws per second, Fenwick tree vs the study's Algorithm 1"


class NaiveTripletSampler:
    """The study's Algorithm 1 ("Take 1"): uniform anchor class, uniform other class; not uniform over triplets."""

    def __init__(self, labels, seed: int | None = 0):
        from training.samplers import _Classes

        self.c = _Classes(labels)
        self.m = len(self.c.sizes)
        if self.m < 2 or not (self.c.sizes >= 2).any():
            raise ValueError("no triplet exists: need a class with two items and another class")
        self.rng = np.random.default_rng(seed)

    def sample(self) -> tuple[int, int, int]:
        while True:  # i and j distinct ("select one and then the other"); again if C_i has no pair
            i = int(self.rng.integers(self.m))
            j = int(self.rng.integers(self.m - 1))
            j += j >= i
            if self.c.sizes[i] >= 2:
                break
        a, p = self.c.two(i, self.rng)
        return a, p, self.c.one(j, self.rng)

    def sample_batch(self, k: int) -> np.ndarray:
        return np.array([self.sample() for _ in range(k)], dtype=np.int64).reshape(k, 3)


def class_sizes(m: int, zipf: float, max_size: int, seed: int) -> np.ndarray:
    return np.minimum(np.random.default_rng(seed).zipf(zipf, m), max_size).astype(np.int64)


def tv_from_uniform(sizes: np.ndarray, scheme: str) -> float:
    """Exact total-variation distance from uniform over all triplets, grouping classes by size (O(sizes^2))."""
    N, m = int(sizes.sum()), len(sizes)
    count = Counter(int(s) for s in sizes)
    total = sum(comb(s, 2) * (N - s) * c for s, c in count.items())  # number of triplets
    u = 1.0 / total
    if scheme == "exact":
        return 0.0
    tv = 0.0
    if scheme == "study":  # P(triplet) = 1 / (sum_j C(n_j,2) * (N - n_i)) for anchor class i
        pairs = sum(comb(s, 2) * c for s, c in count.items())
        for s, c in count.items():
            if s >= 2:
                tv += c * comb(s, 2) * (N - s) * abs(1.0 / (pairs * (N - s)) - u)
        return 0.5 * tv
    eligible = sum(c for s, c in count.items() if s >= 2)  # naive: 1 / (|E| (m-1) C(n_i,2) n_j)
    for s, cs in count.items():
        if s < 2:
            continue
        for t, ct in count.items():
            n_class_pairs = cs * ct - (cs if s == t else 0)
            p = 1.0 / (eligible * (m - 1) * comb(s, 2) * t)
            tv += n_class_pairs * comb(s, 2) * t * abs(p - u)
    return 0.5 * tv


def draws_per_second(sampler, seconds: float, batch: int = 1000) -> float:
    n, t0 = 0, time.perf_counter()
    while True:
        sampler.sample_batch(batch)
        n += batch
        dt = time.perf_counter() - t0
        if dt >= seconds:
            return n / dt


def run(args: argparse.Namespace) -> Result:
    from training.samplers import UniformTripletSampler

    res = Result(NAME, TITLE)
    schemes = {"naive (Algorithm 1)": ("naive", lambda lab: NaiveTripletSampler(lab, seed=args.seed)),
               "fenwick (study weights)": ("study", lambda lab: UniformTripletSampler(lab, args.seed, "study")),
               "fenwick (exact)": ("exact", lambda lab: UniformTripletSampler(lab, args.seed, "exact"))}
    for m in [int(s) for s in args.classes.split(",")]:
        sizes = class_sizes(m, args.zipf, args.max_size, args.seed)
        labels = np.repeat(np.arange(m), sizes)
        samplers, build = {}, {}
        for name, (_, make) in schemes.items():
            t0 = time.perf_counter()
            samplers[name] = make(labels)
            build[name] = time.perf_counter() - t0
            samplers[name].sample_batch(100)  # warm up
        rates: dict[str, list[float]] = {n: [] for n in schemes}
        for _ in range(args.rounds):  # interleaved, so load from other processes hits every scheme alike
            for name, s in samplers.items():
                rates[name].append(draws_per_second(s, args.seconds))
        for name, (kind, _) in schemes.items():
            res.row(classes=m, items=int(sizes.sum()), scheme=name, build_s=sig(build[name], 3),
                    draws_per_s=sig(statistics.median(rates[name]), 3),
                    tv_from_uniform=sig(tv_from_uniform(sizes, kind), 3))
        med = {n: statistics.median(r) for n, r in rates.items()}
        res.compare(f"sampler, {m:,} classes", "draws/s", "naive (Algorithm 1)", "fenwick (exact)",
                    med["naive (Algorithm 1)"], med["fenwick (exact)"])
    res.notes.append(f"class sizes Zipf({args.zipf}) capped at {args.max_size}; median of {args.rounds} "
                     f"interleaved rounds of {args.seconds} s; batches of 1000 draws; one thread (pure Python).")
    return res


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--classes", default="100,10000,100000", help="Numbers of classes, comma-separated.")
    ap.add_argument("--zipf", type=float, default=2.0, help="Zipf exponent of the class sizes (LFW-like: 2).")
    ap.add_argument("--max-size", type=int, default=530, help="Largest class (LFW's largest person has 530).")
    ap.add_argument("--seconds", type=float, default=2.0, help="Seconds per timed round.")
    ap.add_argument("--rounds", type=int, default=3, help="Interleaved rounds per scheme; the median is kept.")
    ap.add_argument("--seed", type=int, default=0)
    add_json_option(ap)
    return ap


def main(argv: list[str] | None = None) -> Result:
    return main_with_result(run, parser(), argv, NAME, TITLE)


if __name__ == "__main__":
    main()
