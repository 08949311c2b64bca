"""Choosing the faces to analyse, saved embeddings, and pairs mapped onto the analysed faces."""

from __future__ import annotations

import numpy as np
import pytest

from iznet.errors import NotFoundError, PreconditionError, UserInputError
from iznet.synthetic import make_people
from training.analysis import inputs


def test_folder_of_people_top_n_and_caps(tmp_path):
    make_people(tmp_path / "photos", people=4, photos=5, seed=1, size=64)
    (tmp_path / "photos" / "notes.txt").write_text("not a person")
    faces, kind = inputs.list_faces(tmp_path / "photos")
    assert kind == "folder" and len(faces) == 20
    some = inputs.choose_people(faces, top=2, max_per_person=3, seed=0)
    assert len({f.identity for f in some}) == 2 and len(some) == 6
    assert some == inputs.choose_people(faces, top=2, max_per_person=3, seed=0)  # seeded
    with pytest.raises(NotFoundError, match="Nobody"):
        inputs.choose_people(faces, names=["Nobody"])
    with pytest.raises(UserInputError, match="no splits"):
        inputs.list_faces(tmp_path / "photos", split="test")
    with pytest.raises(NotFoundError):
        inputs.list_faces(tmp_path / "missing")


@pytest.mark.shared_data
def test_top_12_of_shared_lfw_are_the_people_with_most_photos(shared_data):
    faces, _ = inputs.list_faces(shared_data / "lfw")
    chosen = inputs.choose_people(faces, top=12)
    people = {f.identity for f in chosen}
    assert len(people) == 12 and {"Colin_Powell", "Tony_Blair", "Hugo_Chavez"} <= people
    counts = {}
    for f in faces:
        counts[f.identity] = counts.get(f.identity, 0) + 1
    assert min(counts[p] for p in people) >= max(c for p, c in counts.items() if p not in people)


def test_pairs_file_maps_onto_analysed_faces(tmp_path):
    labels = np.array(["Ann"] * 3 + ["Bob"] * 3)
    paths = [f"/x/Ann/Ann_{k:04d}.jpg" for k in (1, 2, 3)] + [f"/x/Bob/Bob_{k:04d}.jpg" for k in (1, 2, 3)]
    pf = tmp_path / "pairs.txt"
    pf.write_text("1\t2\nAnn\t1\t2\nBob\t2\t3\nAnn\t3\tBob\t1\nAnn\t1\tCat\t1\n")
    got = inputs.map_pairs(pf, labels, paths, min_pairs=1)
    assert got == [(0, 1, 0), (4, 5, 0), (2, 3, 0)]  # the pair with Cat is not among the faces
    notes = []
    assert inputs.map_pairs(pf, labels, paths, min_pairs=5, note=notes.append) is None
    assert "only 2 same-person and 1 different-person" in notes[0]


def test_model_path_errors_are_clear(tmp_path):
    with pytest.raises((PreconditionError, NotFoundError, UserInputError)):
        inputs.load_model(tmp_path / "no-such-model")
