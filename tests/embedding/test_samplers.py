"""Uniform triplet and pair sampling (the study's Appendix A), tested statistically.

A chi-square goodness-of-fit test at the 0.1% level (critical value by the Wilson-Hilferty approximation)
checks that every triplet / pair comes up equally often; the seeds are fixed, so the tests are deterministic.
"""

from collections import Counter
from itertools import combinations

import numpy as np
import pytest

from training.samplers import FenwickTree, UniformPairSampler, UniformTripletSampler


def chi2_critical(dof: int, z: float = 3.09) -> float:  # z = 3.09: upper 0.1% of the normal
    return dof * (1 - 2 / (9 * dof) + z * (2 / (9 * dof)) ** 0.5) ** 3


def chi2_stat(counts: Counter, support: list, draws: int) -> float:
    exp = draws / len(support)
    return sum((counts.get(s, 0) - exp) ** 2 / exp for s in support)


def canon_triplet(t, labels):
    a, p, n = t
    assert labels[a] == labels[p] and labels[a] != labels[n] and a != p
    return (frozenset((a, p)), n)


def all_triplets(labels):
    out = []
    for a, p in combinations(range(len(labels)), 2):
        if labels[a] == labels[p]:
            out += [(frozenset((a, p)), n) for n in range(len(labels)) if labels[n] != labels[a]]
    return out


def test_fenwick_find_and_update():
    t = FenwickTree([3, 0, 5, 1])
    assert t.total == 9
    assert [t.find(v) for v in range(9)] == [0, 0, 0, 2, 2, 2, 2, 2, 3]
    t.update(1, 2)
    assert t.total == 11 and t.find(3) == 1 and t.find(4) == 1 and t.find(5) == 2
    assert t.prefix(2) == 5
    with pytest.raises(ValueError):
        t.find(11)


def test_fenwick_is_logarithmic_on_many_classes():
    w = list(range(1, 100_001))
    t = FenwickTree(w)
    cum = np.cumsum(w)
    rng = np.random.default_rng(0)
    for v in rng.integers(0, t.total, 200):
        assert t.find(int(v)) == int(np.searchsorted(cum, v, side="right"))


def test_study_example_each_of_9_triplets_has_probability_one_ninth():
    # C1 = {a, b} (items 0, 1), C2 = {c, d, e} (items 2, 3, 4)
    labels = [1, 1, 2, 2, 2]
    support = all_triplets(labels)
    assert len(support) == 9
    s = UniformTripletSampler(labels, seed=1)
    assert s.total_triplets == 9
    draws = 36_000
    counts = Counter(canon_triplet(s.sample(), labels) for _ in range(draws))
    assert set(counts) == set(support)
    assert chi2_stat(counts, support, draws) < chi2_critical(len(support) - 1)
    ab = sum(c for (pair, _), c in counts.items() if pair == frozenset((0, 1)))
    assert abs(ab / draws - 3 / 9) < 0.01  # the pair (a, b) in 1/3 of triplets, not the naive 1/2


def test_study_weighting_is_not_uniform_for_triplets():
    # weighting anchor classes by C(n_i, 2) alone (the study's / DESIGN.md's formula) gives 1/12 and 1/8, not 1/9
    labels = [1, 1, 2, 2, 2]
    support = all_triplets(labels)
    s = UniformTripletSampler(labels, seed=2, weighting="study")
    draws = 36_000
    counts = Counter(canon_triplet(s.sample(), labels) for _ in range(draws))
    ab = sum(c for (pair, _), c in counts.items() if pair == frozenset((0, 1)))
    assert abs(ab / draws - 1 / 4) < 0.01
    assert chi2_stat(counts, support, draws) > chi2_critical(len(support) - 1)


def naive_sampler(labels, rng):
    """The study's Algorithm 1: uniform anchor class, uniform pair in it, uniform other class, item in it."""
    classes = sorted(set(labels))
    members = {c: [i for i, lab in enumerate(labels) if lab == c] for c in classes}
    big = [c for c in classes if len(members[c]) >= 2]
    ci = big[rng.integers(len(big))]
    a, p = rng.choice(members[ci], 2, replace=False)
    cj = [c for c in classes if c != ci][rng.integers(len(classes) - 1)]
    return int(a), int(p), int(rng.choice(members[cj]))


def test_naive_scheme_overweights_the_small_class():
    labels = [1, 1, 2, 2, 2]
    rng = np.random.default_rng(0)
    draws = 20_000
    ab = sum(1 for _ in range(draws) if set(naive_sampler(labels, rng)[:2]) == {0, 1})
    assert abs(ab / draws - 0.5) < 0.015


@pytest.mark.parametrize("sizes", [(2, 3), (1, 4, 2, 3), (5, 1, 1, 2)])
def test_triplets_uniform_on_uneven_classes(sizes):
    labels = [c for c, n in enumerate(sizes) for _ in range(n)]
    support = all_triplets(labels)
    s = UniformTripletSampler(labels, seed=3)
    draws = 400 * len(support)
    counts = Counter(canon_triplet(s.sample(), labels) for _ in range(draws))
    assert set(counts) <= set(support)
    assert chi2_stat(counts, support, draws) < chi2_critical(len(support) - 1)


def test_pairs_uniform_within_same_and_within_different():
    labels = [0, 0, 1, 1, 1, 2, 3, 3, 3, 3]
    s = UniformPairSampler(labels, seed=4)
    same_support = [frozenset(p) for p in combinations(range(10), 2) if labels[p[0]] == labels[p[1]]]
    diff_support = [frozenset(p) for p in combinations(range(10), 2) if labels[p[0]] != labels[p[1]]]
    same, diff = Counter(), Counter()
    draws = 40_000
    for _ in range(draws):
        i, j, y = s.sample()
        assert i != j and (labels[i] == labels[j]) == bool(y)
        (same if y else diff)[frozenset((i, j))] += 1
    ns, nd = sum(same.values()), sum(diff.values())
    assert abs(ns / draws - 0.5) < 0.01
    assert chi2_stat(same, same_support, ns) < chi2_critical(len(same_support) - 1)
    assert chi2_stat(diff, diff_support, nd) < chi2_critical(len(diff_support) - 1)


def test_samplers_are_deterministic_under_a_seed_and_refuse_impossible_sets():
    labels = list(np.repeat(np.arange(6), 3))
    assert np.array_equal(UniformTripletSampler(labels, seed=7).sample_batch(50),
                          UniformTripletSampler(labels, seed=7).sample_batch(50))
    assert not np.array_equal(UniformTripletSampler(labels, seed=7).sample_batch(50),
                              UniformTripletSampler(labels, seed=8).sample_batch(50))
    with pytest.raises(ValueError):
        UniformTripletSampler([0, 1, 2])  # nobody has two images
    with pytest.raises(ValueError):
        UniformPairSampler([0, 0, 0])  # one person: no different pair
