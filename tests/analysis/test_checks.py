"""The warnings fire on embeddings built to trigger them, and stay quiet on well-separated ones."""

from __future__ import annotations

import numpy as np

from tests.analysis.conftest import clusters, random_centres, unit
from training.analysis import analyze
from training.analysis.checks import overlap_findings


def test_well_separated_people_raise_no_warning(separated):
    x, labels = separated
    r = analyze(x, labels, tsne=False)
    assert [w.message for w in r.warnings] == []
    assert r.summary["overlaps"] == 0 and not r.summary["collapse"]
    assert r.nearest_medoid_accuracy == 1.0
    # every medoid distance is well above every person's spread
    spreads = [p.spread for p in r.persons]
    off = r.medoid_distances[~np.eye(12, dtype=bool)]
    assert off.min() > 2 * max(spreads)


def test_overlap_fires_for_the_eunbi_case_and_only_for_the_close_pairs(overlapping):
    x, labels = overlapping
    r = analyze(x, labels, tsne=False)
    pairs = {frozenset(w.people) for w in r.warnings_of("overlap")}
    assert frozenset({"eunbi", "minju"}) in pairs
    assert frozenset({"eunbi", "chaeyeon"}) in pairs
    assert not any("hyewon" in p or "yuri" in p for p in pairs)
    assert not r.warnings_of("collapse")
    w = next(w for w in r.warnings_of("overlap") if set(w.people) == {"eunbi", "minju"})
    assert w.details["medoid_distance"] < w.details["spread"]["eunbi"]
    assert "eunbi" in w.message and "minju" in w.message and "overlap" in w.message


def test_overlap_rule_on_the_studys_own_numbers():
    # Table 2 and Figure 6: Eunbi's faces spread to 1.2; her medoid is 1.06 from Chaeyeon's and 0.79 from
    # Minju's; everyone else is further than their spreads.
    people = ["chaeyeon", "eunbi", "minju", "yuri"]
    d = np.array([[0, 1.06, 0.83, 1.98], [1.06, 0, 0.79, 1.95], [0.83, 0.79, 0, 1.94], [1.98, 1.95, 1.94, 0]])
    spreads = np.array([0.7, 1.2, 0.75, 0.6])
    confusion = np.diag([10, 10, 10, 10])
    found = overlap_findings(people, d, spreads, confusion)
    # worst first; Chaeyeon-Minju (0.83) is further apart than either of their spreads (0.70, 0.75): no warning
    assert [set(f.people) for f in found] == [{"eunbi", "minju"}, {"chaeyeon", "eunbi"}]
    assert found[0].details["ratio"] < found[1].details["ratio"] < 1


def test_collapse_fires_when_photos_share_one_vector_and_two_people_share_a_medoid():
    # NN1 + binary classification: Chaewon and Yena sent to the same vector; each person a single point
    centres = random_centres(6, seed=3)
    centres[1] = centres[0]
    x = np.repeat(centres, 15, axis=0).astype(np.float32)
    labels = np.repeat(["chaewon", "yena", "nako", "sakura", "yuri", "minju"], 15)
    r = analyze(x, labels, tsne=False)
    kinds = [w.kind for w in r.warnings]
    assert "collapse" in kinds
    assert any("exactly 0" in w.message for w in r.warnings_of("collapse"))
    assert any(set(w.people) == {"chaewon", "yena"} and "share one medoid" in w.message
               for w in r.warnings_of("collapse"))
    assert r.collapse_stats["intra_at_0"] == 1.0


def test_collapse_fires_when_many_distances_are_exactly_two():
    # people sent to opposite poles of the sphere: +e0/-e0, +e1/-e1, ...
    eye = np.eye(128, dtype=np.float32)
    centres = np.concatenate([eye[:3], -eye[:3]])
    rng = np.random.default_rng(0)
    x = unit(np.repeat(centres, 10, axis=0) + rng.normal(size=(60, 128)) * 1e-5)
    labels = np.repeat([f"p{k}" for k in range(6)], 10)
    r = analyze(x, labels, tsne=False)
    assert any("exactly 2" in w.message for w in r.warnings_of("collapse"))
    assert r.collapse_stats["between_at_2"] > 0.1


def test_small_noise_is_not_collapse_and_unnormalised_embeddings_are_named():
    x, labels = clusters(random_centres(4, seed=5), 10, 0.01)
    assert not analyze(x, labels, tsne=False).warnings_of("collapse")
    r = analyze(x * 40.0, labels, tsne=False)  # the study's InceptionV3 table had distances in the thousands
    assert r.warnings_of("not-normalised")
    assert not r.summary["normalised"]
    assert not r.warnings_of("collapse")


def test_a_person_with_one_face_is_reported_not_fatal(separated):
    x, labels = separated
    x = np.concatenate([x, unit(np.ones((1, 128)))])
    labels = np.concatenate([labels, ["loner"]])
    r = analyze(x, labels, tsne=False)
    assert r.warnings_of("small-person")[0].people == ["loner"]
    assert next(p for p in r.persons if p.name == "loner").spread is None


def test_an_embedder_that_separates_nobody_gets_one_headline():
    # a barely trained network: every person's faces scattered over the sphere around nearby centres
    x, labels = clusters(random_centres(6, seed=9) * 0.05, 20, 0.1, seed=9)
    r = analyze(x, labels, tsne=False)
    head = r.warnings_of("poor-separation")
    assert len(head) == 1 and "of 15 pairs of people overlap" in head[0].message
    assert len(r.warnings_of("overlap")) >= 8
    assert r.warnings[0].kind in ("poor-separation", "collapse", "not-normalised")
