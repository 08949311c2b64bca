"""The one model registry: every name resolves, every model says its version and card, a missing or altered
model file is one clear error, and galleries made with no model options name real people."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from iznet import imported, registry
from iznet.cli import main
from iznet.detection.darknet import build_model
from iznet.detection.yolo import save_detector
from iznet.errors import NotFoundError, PreconditionError, UserInputError
from iznet.imported import MissingModelError
from iznet.registry import create_detector, create_embedder, list_models

ANCHORS = [[[8, 9], [12, 14], [18, 20]], [[26, 30], [40, 46], [60, 70]], [[90, 100], [130, 150], [200, 220]]]


def test_models_list_names_every_kind_and_the_defaults(capsys):
    cards = {c["name"]: c for c in list_models(store="/nonexistent-store")}
    for name in ("mtcnn", "haar", "ultralight-320", "ultralight-640", "dlib-resnet", "baseline-lbp",
                 "baseline-pixels"):
        assert {"name", "kind", "source", "default", "available", "summary", "licence"} <= set(cards[name])
    assert [c["name"] for c in cards.values() if c["default"]] == ["mtcnn", "dlib-resnet"]
    assert cards["dlib-resnet"]["source"] == "imported" and cards["dlib-resnet"]["licence"] == "CC0-1.0"
    assert cards["mtcnn"]["licence"] == "MIT" and cards["haar"]["source"] == "teacher"
    assert cards["dlib-resnet"]["digest"]["dlib-resnet"] == "sha256:" + imported.FILES["dlib-resnet"].sha256
    assert cards["dlib-resnet"]["threshold"]["far"] > 0
    assert main(["models", "list", "--json", "--store", "/nonexistent-store"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {c["name"] for c in listed} == set(cards)


def test_every_registered_model_builds_with_a_version():
    for name in ["default", "mtcnn", "haar"]:
        det = create_detector(name)
        assert det.version["kind"] == "detector" and det.version["digest"].startswith("sha256:")
        assert det.detect(np.zeros((60, 80, 3), np.uint8)) == []
    assert create_detector("default").version == create_detector("mtcnn").version
    for name in ["default", "dlib-resnet", "baseline-lbp", "baseline-pixels"]:
        emb = create_embedder(name)
        face = np.random.default_rng(0).integers(0, 255, (emb.chip.size, emb.chip.size, 3), np.uint8)
        v = emb.embed([face])
        assert v.shape == (1, 128) and abs(float(np.linalg.norm(v)) - 1) < 1e-5
        assert emb.version["kind"] == "embedder" and emb.version["digest"]
    assert str(create_embedder("default").chip) == "dlib:150:0.25"
    assert str(create_embedder("baseline-lbp").chip) == "box:160:0.2"


def test_unknown_names_are_one_clear_error():
    with pytest.raises(UserInputError, match="unknown detector 'nope'.*mtcnn"):
        create_detector("nope")
    with pytest.raises(UserInputError, match="unknown embedding model 'nope'.*dlib-resnet"):
        create_embedder("nope")
    with pytest.raises(UserInputError, match="backend"):
        create_embedder("default", backend="tensorflow")
    with pytest.raises(NotFoundError, match="no model 'ghost'"):
        create_embedder("models/ghost", store="/nonexistent-store")


def test_a_missing_package_or_an_altered_file_names_what_to_install(monkeypatch, tmp_path, capsys):
    f = imported.FILES["dlib-resnet"]
    monkeypatch.setitem(imported.FILES, "dlib-resnet", replace(f, package="no-such-model-package-xyz"))
    monkeypatch.setattr(imported, "_checked", {})
    with pytest.raises(MissingModelError, match="no-such-model-package-xyz.*make setup"):
        create_embedder("default")
    photos = tmp_path / "photos" / "ada"
    photos.mkdir(parents=True)
    import cv2

    cv2.imwrite(str(photos / "a.jpg"), np.full((64, 64, 3), 128, np.uint8))
    assert main(["gallery", "enroll", "g", str(tmp_path / "photos"), "--store", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no-such-model-package-xyz" in err and "Traceback" not in err
    assert not (tmp_path / "s" / "galleries" / "g").exists()
    cards = {c["name"]: c for c in list_models(store=tmp_path)}
    assert not cards["dlib-resnet"]["available"] and "no-such-model-package-xyz" in cards["dlib-resnet"]["unavailable"]
    monkeypatch.setitem(imported.FILES, "dlib-resnet", replace(f, sha256="0" * 64))
    with pytest.raises(PreconditionError, match="not the pinned.*reinstall"):
        imported.imported_file("dlib-resnet")


def test_a_trained_detector_and_store_models_load_by_path_and_name(tmp_path):
    torch.manual_seed(0)
    path = save_detector(build_model("nano"), {"name": "toy", "size": "nano", "num_anchors": 3, "anchors": ANCHORS,
                                               "input_size": 160, "conf_threshold": 0.5}, tmp_path / "toy.pt")
    det = create_detector(str(path))
    assert det.name == "toy" and det.version["kind"] == "detector" and det.version["digest"].startswith("sha256:")
    assert create_detector(str(path.with_suffix(".json")), conf_threshold=0.9).conf_threshold == 0.9
    from iznet.serving import publish_model
    from iznet.store import ArtifactStore

    store = tmp_path / "store"
    publish_model(ArtifactStore(store), "friendly", "baseline-pixels")
    emb = create_embedder("models/friendly", store=store)
    assert emb.version == create_embedder("baseline-pixels").version
    assert any(c["name"] == "models/friendly" for c in list_models(store=store))


@pytest.mark.shared_data
def test_a_gallery_made_with_no_model_options_names_real_people(shared_data, tmp_path, capsys):
    """What a new user does: enroll a folder of people, label photos, no model named anywhere."""
    store = tmp_path / "store"
    assert main(["gallery", "enroll", "friends", str(shared_data / "face_recognition_knn" / "train"),
                 "--store", str(store), "--quiet"]) == 0
    out = tmp_path / "out"
    test = shared_data / "face_recognition_knn" / "test"
    assert main(["label", "-g", "friends", "--store", str(store), "-o", str(out),
                 str(test / "obama_and_biden.jpg"), str(test / "kit_with_rose.jpg"), str(test / "obama1.jpg")]) == 0
    ob = json.loads((out / "obama_and_biden.json").read_text())
    assert ob["detector"]["name"] == "mtcnn" and ob["embedder"]["name"] == "dlib-resnet"
    names = [f["name"] for f in ob["faces"]]
    assert "obama" in names and "biden" in names
    assert all(f["aligned"] == "landmarks" for f in ob["faces"])
    kr = json.loads((out / "kit_with_rose.json").read_text())
    assert sorted(f["name"] for f in kr["faces"] if not f["unknown"]) == ["kit_harington", "rose_leslie"]
    assert [f["name"] for f in json.loads((out / "obama1.json").read_text())["faces"]] == ["obama"]


def test_the_shipped_student_is_registered_and_every_engine_gives_its_vectors(shared_data, tmp_path,
                                                                             monkeypatch):
    """``distilled-small`` ships in the package with its card: listed with its figures, onnxruntime by
    default (exported once into the cache), the same vectors and version as torch, and it tells two people
    apart on dlib's chips of real photos."""
    from iznet.embedding.backends import BACKEND_ATOL
    from iznet.imageio import read_image

    monkeypatch.setenv("IZNET_CACHE", str(tmp_path / "cache"))
    card = {c["name"]: c for c in list_models(store="/nonexistent-store")}["distilled-small"]
    assert card["available"] and card["source"] == "trained" and card["chip"] == "dlib:150:0.25"
    assert card["teacher"] == "dlib-resnet" and card["figures"]["lfw_fold_5"]["accuracy"] > 0.9
    fast, ref = create_embedder("distilled-small"), create_embedder("distilled-small", "torch")
    assert fast.backend == "onnx" and ref.backend == "torch" and fast.version == ref.version
    assert list((tmp_path / "cache" / "onnx").glob("distilled-small-*.onnx"))
    assert fast.calibration["far"] == 1e-3
    johns = shared_data / "dlib_johns"
    if not johns.is_dir():
        pytest.skip("needs dlib_johns in the shared data")
    a = sorted((johns / "John_Salley").glob("*.jpg"))[:2]
    b = sorted((johns / "John_Savage").glob("*.jpg"))[:1]
    chips = [read_image(p) for p in a + b]  # already dlib's 150x150 chips
    v, w = fast.embed(chips), ref.embed(chips)
    assert np.abs(v - w).max() <= BACKEND_ATOL
    assert v[0] @ v[1] > v[0] @ v[2]


def test_the_shipped_detector_finds_faces_with_their_five_points(shared_data):
    """``yolo-tiny`` (trained here) is a registered detector: on a real two-person photo it finds both
    faces, each with five points inside its box, left eye left of the right one."""
    from iznet.imageio import read_image

    photo = shared_data / "face_recognition_knn" / "test" / "obama_and_biden.jpg"
    if not photo.is_file():
        pytest.skip("needs face_recognition_knn in the shared data")
    det = create_detector("yolo-tiny")
    assert det.version["kind"] == "detector" and det.version["digest"].startswith("sha256:")
    faces = [f for f in det.detect(read_image(photo)) if f.score >= 0.5]
    assert len(faces) >= 2
    for f in faces:
        lm = np.asarray(f.landmarks)
        assert lm.shape == (5, 2) and lm[0, 0] < lm[1, 0]
        assert (lm[:, 0] >= f.x1 - 2).all() and (lm[:, 0] <= f.x2 + 2).all()
