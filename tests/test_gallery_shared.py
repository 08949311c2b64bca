"""The gallery and labelling on the team's real photos (skipped without ../shared/data)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from iznet.cli import main
from iznet.errors import PreconditionError
from iznet.gallery import GalleryStore, reindex
from iznet.registry import create_embedder
from iznet.imageio import read_image
from iznet.pipeline import Pipeline
from iznet.registry import create_detector

pytestmark = pytest.mark.shared_data


@pytest.fixture(scope="module")
def bbt_store(shared_data, tmp_path_factory) -> Path:
    store = tmp_path_factory.mktemp("bbt-store")
    assert main(["gallery", "enroll", "bbt", str(shared_data / "bbt_face_api"), "--store", str(store),
                 "--quiet"]) == 0
    return store


def test_bbt_tight_crops_are_all_enrolled_and_group_photos_labelled(bbt_store, shared_data, tmp_path):
    g = GalleryStore(bbt_store).load("bbt")
    # 8 people x 5 tight grey 150x150 crops: MTCNN finds every face (a few only after the padded second
    # look) and its landmarks cut dlib's chip.
    assert len(g.people) == 8 and len(g.exemplars) == 40
    assert all(s["status"] == "enrolled" for s in g.sources)
    assert all("aligned by landmarks" in e.note for e in g.exemplars.values())
    assert g.model["name"] == "dlib-resnet" and g.detector == "mtcnn"
    out = tmp_path / "out"
    photos = sorted((shared_data / "groups" / "bbt").glob("*.jpg"))[:2]
    assert main(["label", *map(str, photos), "-g", "bbt", "--store", str(bbt_store), "-o", str(out)]) == 0
    names = {p.name for p in g.people.values()} | {"unknown"}
    for photo in photos:
        res = json.loads((out / f"{photo.stem}.json").read_text())
        assert len(res["faces"]) >= 3  # group photos: every cast member the detector finds
        for f in res["faces"]:
            assert f["name"] in names and f["threshold"] == pytest.approx(g.threshold_value)
            assert f["unknown"] == (f["name"] == "unknown") and (f["score"] >= f["threshold"]) != f["unknown"]
        assert res["gallery"] == {**g.version_info(), "version": 1}
        assert read_image(out / f"{photo.stem}.labelled.jpg").shape[:2] == (res["height"], res["width"])


def test_face_recognition_knn_names_enrolled_and_not_strangers(shared_data, tmp_path):
    """Enroll everyone but Obama: Kit Harington and Rose Leslie are named in their photo, Obama is unknown."""
    src = tmp_path / "train"
    for p in (shared_data / "face_recognition_knn" / "train").iterdir():
        if p.name != "obama":
            shutil.copytree(p, src / p.name)
    gs = GalleryStore(tmp_path / "store")
    emb = create_embedder("baseline-lbp")
    g = gs.create("frk", emb.version)
    pipe = Pipeline(create_detector("haar"), emb, g)
    report = pipe.enroll_folder(src)
    assert not report.rejected and len(g.people) == 4
    assert any("several faces" in o.note for o in report.enrolled)  # biden2.jpg shows two people
    gs.save(g)
    test = shared_data / "face_recognition_knn" / "test"
    res = pipe.label(test / "kit_with_rose.jpg")
    named = [f.name for f in res.faces if not f.identity.unknown]
    assert named == ["rose_leslie", "kit_harington"]  # left to right
    obama = pipe.label(test / "obama1.jpg")
    assert len(obama.faces) == 1 and obama.faces[0].name == "unknown"
    assert obama.faces[0].identity.score < obama.faces[0].identity.threshold
    # The gallery refuses a pipeline with another model, and a re-index makes a version for it.
    with pytest.raises(PreconditionError):
        Pipeline(pipe.detector, create_embedder("baseline-pixels"), gs.load("frk"))
    old, new = reindex(gs, "frk", create_embedder("baseline-pixels"))
    assert (old, new) == (1, 2) and gs.load("frk", 1).model["name"] == "baseline-lbp"
    assert len(gs.load("frk").exemplars) == len(g.exemplars)
