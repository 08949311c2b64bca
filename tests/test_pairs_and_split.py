"""Pairs files and split assignment, without any photos."""

from collections import Counter

import pytest

from iznet.data.builder import BuildConfig, assign_splits, make_pairs
from iznet.data.pairs import read_pairs, write_pairs
from iznet.errors import UserInputError


def test_pairs_write_then_read_is_identity(tmp_path):
    images = {f"p{i}": list(range(1, 2 + i % 4)) for i in range(30)}
    folds, note = make_pairs(images, folds=3, per_fold=5, seed=1)
    assert len(folds) == 3 and "3 folds x 5" in note
    path = tmp_path / "pairs.txt"
    write_pairs(path, folds)
    pf = read_pairs(path)
    assert (pf.folds, pf.per_fold) == (3, 5)
    assert pf.pairs == [p for same, diff in folds for p in same + diff]
    assert path.read_text().splitlines()[0] == "3\t5"
    # identity-disjoint folds
    for a in range(3):
        for b in range(a + 1, 3):
            assert not pf.people(a) & pf.people(b)


def test_reads_the_real_lfw_pairs_file(shared_data):
    pf = read_pairs(shared_data / "lfw" / "pairs_folds1-5.txt")
    assert (pf.folds, pf.per_fold, len(pf.pairs)) == (5, 300, 3000)
    a, b = pf.pairs[0].paths(shared_data / "lfw")
    assert a.is_file() and b.is_file()


@pytest.mark.parametrize("text, msg", [("", "empty"), ("x\ty\n", "expected"), ("1\t1\na\t1\t2\n", "header says"),
                                       ("1\t1\na\t1\nb\t1\tc\t2\n", "not a pair line")])
def test_malformed_pairs_files_say_what_is_wrong(tmp_path, text, msg):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(UserInputError, match=msg):
        read_pairs(path)


def test_too_few_people_gives_no_pairs_and_a_reason():
    folds, note = make_pairs({"only": [1, 2, 3]}, folds=10, per_fold=10, seed=0)
    assert folds == [] and "2+ people" in note


def _records(people: dict[str, int]):
    return [{"source": f"{p}/{i}.jpg", "identity": p, "status": "kept"} for p, n in people.items() for i in range(n)]


def test_image_split_follows_the_ratios_per_person_and_is_stable_when_growing():
    cfg = BuildConfig(ratios=(0.8, 0.1, 0.1))
    recs = _records({"a": 10, "b": 20})
    assign_splits(recs, cfg)
    by = Counter((r["identity"], r["split"]) for r in recs)
    assert (by["a", "train"], by["a", "dev"], by["a", "test"]) == (8, 1, 1)
    assert (by["b", "train"], by["b", "dev"], by["b", "test"]) == (16, 2, 2)
    before = {r["source"]: r["split"] for r in recs}
    grown = recs + _records({"a": 15})[10:]
    assign_splits(grown, cfg)
    assert {r["source"]: r["split"] for r in grown if r["source"] in before} == before


def test_identity_split_puts_each_person_in_one_split():
    recs = _records({f"p{i}": 3 for i in range(20)})
    assign_splits(recs, BuildConfig(split_by="identity", ratios=(0.6, 0.2, 0.2)))
    per_person = {}
    for r in recs:
        per_person.setdefault(r["identity"], set()).add(r["split"])
    assert all(len(s) == 1 for s in per_person.values())
    assert Counter(next(iter(s)) for s in per_person.values()) == {"train": 12, "dev": 4, "test": 4}


def test_bad_ratios_are_refused():
    with pytest.raises(UserInputError, match="sum"):
        BuildConfig(ratios=(0.5, 0.1, 0.1))
