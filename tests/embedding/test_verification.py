"""The verification and identification metrics, on cases with known answers."""

import numpy as np
import pytest

from iznet.evaluation.verification import (auc, gallery_probe_split, kfold_accuracy, rank1_identification, roc,
                                           stratified_folds, tar_at_far, verification_report)
from training.data import load_pairs


def test_perfectly_separated_pairs():
    dist = np.r_[np.linspace(0.1, 0.5, 50), np.linspace(1.0, 2.0, 50)]
    same = np.r_[np.ones(50, bool), np.zeros(50, bool)]
    rep = verification_report(dist, same, 10)
    assert rep["accuracy"] == 1.0 and rep["accuracy_std"] == 0.0
    assert rep["auc"] == pytest.approx(1.0)
    assert rep["tar_at_far"] == 1.0
    assert 0.5 < rep["threshold"] < 1.0


def test_random_scores_are_at_chance():
    rng = np.random.default_rng(0)
    dist = rng.random(4000)
    same = rng.random(4000) < 0.5
    rep = verification_report(dist, same, 10)
    assert abs(rep["accuracy"] - 0.5) < 0.05
    assert abs(rep["auc"] - 0.5) < 0.03


def test_threshold_comes_from_the_other_folds():
    # fold 0 alone would be perfectly separated at 1.5, but the other folds want 0.5: fold 0 gets it wrong
    dist = np.array([1.0, 2.0, 0.2, 0.8, 0.2, 0.8])
    same = np.array([True, False, True, False, True, False])
    folds = np.array([0, 0, 1, 1, 2, 2])
    res = kfold_accuracy(dist, same, folds)
    assert res["fold_accuracies"] == [0.5, 1.0, 1.0]
    assert res["accuracy"] == pytest.approx(2.5 / 3)


def test_stratified_folds_keep_balance():
    same = np.r_[np.ones(300, bool), np.zeros(300, bool)]
    f = stratified_folds(same, 10)
    for k in range(10):
        assert (f == k).sum() == 60 and same[f == k].sum() == 30


def test_roc_auc_and_tar_at_far():
    dist = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    same = np.array([True, True, False, True, False, False])
    far, tar, thr = roc(dist, same)
    assert far[0] == 0 and tar[0] == 0 and far[-1] == 1 and tar[-1] == 1
    assert auc(far, tar) == pytest.approx(8 / 9)
    assert tar_at_far(far, tar, 0.0) == pytest.approx(2 / 3)
    assert tar_at_far(far, tar, 0.34) == pytest.approx(1.0)


def test_rank1_identification():
    gal = np.eye(3, dtype=np.float32)
    probes = np.array([[0.9, 0.1, 0], [0, 0.2, 0.9], [0.1, 0.9, 0]], np.float32)
    r = rank1_identification(gal, ["a", "b", "c"], probes, ["a", "c", "c"])
    assert r["rank1"] == pytest.approx(2 / 3) and r["gallery"] == 3
    g, p = gallery_probe_split(["a", "a", "a", "b", "c", "c"], seed=0)
    assert len(g) == 2 and len(p) == 3 and not set(g) & set(p)


def test_lfw_pairs_file_resolves_names_and_folds(tmp_path):
    f = tmp_path / "pairs.txt"
    f.write_text("2\t1\nA\t1\t2\nA\t1\tB\t3\nC\t2\t4\nC\t1\tD\t1\n")
    pl = load_pairs(f)
    assert pl.left[0] == "A/A_0001.jpg" and pl.right[1] == "B/B_0003.jpg"
    assert pl.same.tolist() == [True, False, True, False]
    assert pl.fold.tolist() == [1, 1, 2, 2]
    assert pl.people({2}) == {"C", "D"}
    assert len(pl.select({1})) == 2
