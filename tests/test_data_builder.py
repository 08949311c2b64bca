"""The face dataset builder on a small real subset of LFW, with bad photos among the good ones."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from iznet.cli import main as iznet
from iznet.data.builder import BuildConfig, assign_splits, build_dataset, load_manifest
from iznet.data.dataset import FaceDataset
from iznet.data.pairs import read_pairs
from iznet.errors import PreconditionError

from .conftest import copy_people

PEOPLE = {"Colin_Powell": 12, "Tony_Blair": 10, "Hugo_Chavez": 10, "Laura_Bush": 8, "Andre_Agassi": 8,
          "Vicente_Fox": 6, "Jennifer_Capriati": 6, "Lleyton_Hewitt": 6}


@pytest.fixture(scope="module")
def src(shared_data, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    copy_people(shared_data / "lfw", root, PEOPLE)
    # A corrupt photo, a photo with no face, and an exact re-upload of a photo under another name.
    (root / "Tony_Blair" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    scene = sorted((shared_data / "detection" / "nonface_scenes").glob("*.jpg"))[0]
    shutil.copy(scene, root / "Colin_Powell" / "no_face_here.jpg")
    shutil.copy(root / "Vicente_Fox" / "Vicente_Fox_0001.jpg", root / "Vicente_Fox" / "copy_of_first.jpg")
    return root


@pytest.fixture(scope="module")
def built(src, tmp_path_factory):
    dst = tmp_path_factory.mktemp("ds") / "faces"
    cfg = BuildConfig(split_by="identity", ratios=(0.5, 0.25, 0.25), folds=2, pairs_per_fold=10)
    return build_dataset(src, dst, cfg, workers=1, progress=False), dst, cfg


def test_bad_photos_are_skipped_with_reasons_and_the_rest_kept(built):
    report, dst, _ = built
    records = {r["source"]: r for r in load_manifest(dst)}
    assert records["Tony_Blair/broken.jpg"]["status"] == "skipped"
    assert records["Tony_Blair/broken.jpg"]["reason"] == "unreadable"
    assert records["Colin_Powell/no_face_here.jpg"]["reason"] == "no_face"
    assert records["Vicente_Fox/copy_of_first.jpg"]["status"] == "duplicate"
    assert records["Vicente_Fox/copy_of_first.jpg"]["duplicate_of"] == "Vicente_Fox/Vicente_Fox_0001.jpg"
    # LFW photos are one face each: nearly all are kept, with a box, a teacher score and a hash.
    kept = [r for r in records.values() if r["status"] == "kept"]
    assert len(kept) >= 0.9 * sum(PEOPLE.values())
    assert all(len(r["box"]) == 4 and "score" in r and len(r["phash"]) == 16 for r in kept)
    assert report.counts["kept"] == len(kept) and report.by_reason["unreadable"] == 1


def test_crops_are_aligned_squares_named_like_lfw(built):
    _, dst, cfg = built
    ds = FaceDataset(dst)
    rec = next(r for r in ds.faces() if r.source == "Hugo_Chavez/Hugo_Chavez_0003.jpg")
    assert rec.path == dst / "faces" / "Hugo_Chavez" / "Hugo_Chavez_0003.jpg"  # LFW numbering kept
    crop = ds.load(rec)
    assert crop.shape == (cfg.size, cfg.size, 3)
    # The face is in the middle of the crop: the Haar cascade finds it again there.
    from iznet.detection.teachers import HaarTeacher

    faces = HaarTeacher(min_size=40).detect(crop)
    assert faces and abs(faces[0].center[0] - cfg.size / 2) < cfg.size * 0.15


def test_identity_split_is_disjoint_and_pairs_parse_back(built):
    _, dst, _ = built
    ds = FaceDataset(dst)
    people = {s: set(ds.identities(s)) for s in ("train", "dev", "test")}
    assert all(people[s] for s in people)
    assert not (people["train"] & people["dev"]) and not (people["train"] & people["test"])
    assert not (people["dev"] & people["test"])
    for split in ("dev", "test"):
        pf = read_pairs(ds.pairs_path(split))
        assert len(pf.pairs) == pf.folds * 2 * pf.per_fold
        assert pf.people() <= people[split]
        for pair in pf.pairs:
            a, b = pair.paths(ds.faces_dir)
            assert a.is_file() and b.is_file() and a != b
        assert sum(p.same for p in pf.pairs) == pf.folds * pf.per_fold
        # Folds are identity-disjoint.
        assert not set.intersection(*(pf.people(k) for k in range(pf.folds))) or pf.folds == 1


def test_same_seed_same_split_other_seed_other_split(src, built, tmp_path):
    _, dst, cfg = built
    again = tmp_path / "again"
    build_dataset(src, again, cfg, workers=2, progress=False)  # in parallel this time
    split = lambda d: {r["source"]: r.get("split") for r in load_manifest(d)}  # noqa: E731
    assert split(again) == split(dst)
    assert (again / "pairs_dev.txt").read_text() == (dst / "pairs_dev.txt").read_text()
    # Another seed deals the same faces out differently.
    records = [{k: v for k, v in r.items() if k != "split"} for r in load_manifest(dst)]
    assign_splits(records, dataclasses.replace(cfg, seed=7))
    assert {r["source"]: r.get("split") for r in records} != split(dst)


def test_growing_the_source_processes_only_new_photos_and_keeps_recorded_splits(shared_data, tmp_path):
    grow_src = tmp_path / "src"
    copy_people(shared_data / "lfw", grow_src, {"Tony_Blair": 10, "Laura_Bush": 6})
    dst = tmp_path / "ds"
    cfg = BuildConfig()  # split by image
    first = build_dataset(grow_src, dst, cfg, workers=1, progress=False)
    before = {r["source"]: r.get("split") for r in load_manifest(dst)}
    added = copy_people(shared_data / "lfw", grow_src, {"Jacques_Chirac": 5})
    second = build_dataset(grow_src, dst, cfg, workers=1, progress=False)
    assert second.processed == len(added) and second.scanned == first.scanned + len(added)
    after = {r["source"]: r.get("split") for r in load_manifest(dst)}
    assert {k: after[k] for k in before} == before
    assert second.counts["kept"] > first.counts["kept"]
    # Different settings on the same folder are refused, not silently mixed.
    with pytest.raises(PreconditionError, match="size"):
        build_dataset(grow_src, dst, BuildConfig(size=112), workers=1, progress=False)


def test_cli_builds_and_reports_user_mistakes_without_traceback(src, tmp_path, capsys):
    dst = tmp_path / "cli"
    assert iznet(["data", "build", str(src), str(dst), "--quiet", "--split-by", "identity"]) == 0
    out = capsys.readouterr().out
    assert "kept" in out and "unreadable 1" in out and "no_face 1" in out
    assert json.loads((dst / "dataset.json").read_text())["config"]["split_by"] == "identity"
    assert iznet(["data", "info", str(dst)]) == 0
    assert "train:" in capsys.readouterr().out
    assert iznet(["data", "build", str(tmp_path / "missing"), str(dst)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "no such folder" in err and "Traceback" not in err


def test_fallback_centre_box_keeps_portraits_the_teacher_misses(shared_data, tmp_path):
    src = tmp_path / "src" / "Someone"
    src.mkdir(parents=True)
    scene = sorted((shared_data / "detection" / "nonface_scenes").glob("*.jpg"))[0]
    shutil.copy(scene, src / "Someone_0001.jpg")
    dst = tmp_path / "ds"
    report = build_dataset(src.parent, dst, BuildConfig(fallback_center=0.46, teacher="haar"), workers=1, progress=False)
    (rec,) = load_manifest(dst)
    assert report.counts["kept"] == 1 and rec["status"] == "kept" and "fallback" in rec
    w, h = rec["image_wh"]
    x1, y1, x2, y2 = rec["box"]
    assert abs((x1 + x2) / 2 - w / 2) < 1 and abs((x2 - x1) - 0.46 * min(w, h)) < 1
