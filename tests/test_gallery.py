"""Gallery, pipeline, drawing and CLI on generated people and plain arrays (no shared data needed)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

from iznet.cli import main
from iznet.errors import ImageError, NotFoundError, PreconditionError, UserInputError
from iznet.gallery import GalleryStore, reindex
from iznet.registry import create_embedder
from iznet.gallery import gallery as gallery_mod
from iznet.gallery import index as idx
from iznet.gallery.calibrate import self_pairs, threshold_at_far
from iznet.imageio import read_image, write_image
from iznet.pipeline import Pipeline
from iznet.registry import create_detector
from iznet.synthetic import make_people

ENROLLED = ["Ada", "Bo", "Di"]


@pytest.fixture(scope="module")
def people(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("people")
    make_people(root, people=6, photos=3, seed=0, size=160)
    return root


def unit(n: int, dim: int = 128, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture()
def enrolled(tmp_path, people):
    """A saved gallery of three generated people (baseline-lbp, haar) and its store."""
    gs = GalleryStore(tmp_path / "store")
    emb = create_embedder("baseline-lbp")
    g = gs.create("syn", emb.version)
    pipe = Pipeline(create_detector("haar"), emb, g)
    report = pipe.enroll_folder(people, people=ENROLLED)
    assert len(report.enrolled) >= 6
    gs.save(g, action="enroll")
    return gs, g, pipe, report


# ------------------------------------------------------------------------------------------ embedders


def test_baseline_embedders_are_deterministic_normalised_and_distinct(people):
    crops = [cv2.resize(read_image(p), (160, 160)) for p in sorted((people / "Ada").iterdir())]
    for name in ("baseline-lbp", "baseline-pixels"):
        a, b = create_embedder(name), create_embedder(name)
        va, vb = a.embed(crops), b.embed(crops)
        assert va.shape == (3, 128) and va.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(va, axis=1), 1, atol=1e-5)
        np.testing.assert_array_equal(va, vb)
        assert a.version["digest"] == b.version["digest"] and a.version["kind"] == "embedder"
        assert a.embed([]).shape == (0, 128)
    assert create_embedder("baseline-lbp").version["digest"] != create_embedder("baseline-pixels").version["digest"]
    with pytest.raises(UserInputError, match="unknown embedding model"):
        create_embedder("no-such-model")


# --------------------------------------------------------------------------------------- index & rules


def test_index_auto_is_exact_when_small_and_hnsw_recall_against_exact():
    # 300 "people" x 20 exemplars scattered around their centres, like face vectors.
    rng = np.random.default_rng(1)
    centres = unit(300, seed=2)
    vecs = centres.repeat(20, axis=0) + 0.08 * rng.standard_normal((6000, 128)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    ids = np.arange(10, 6010, dtype=np.int64)
    flat = idx.build_index(vecs, ids, "auto")
    assert idx.index_kind(flat) == "flat"
    hnsw = idx.build_index(vecs, ids, "hnsw")
    assert idx.index_kind(hnsw) == "hnsw"
    queries = centres + 0.08 * rng.standard_normal((300, 128)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    es, ei = idx.search(flat, queries, 1)
    hs, hi = idx.search(hnsw, queries, 1)
    assert np.allclose(es[:, 0], (queries @ vecs.T).max(1), atol=1e-5)  # exact really is exact
    assert np.mean(ei[:, 0] == hi[:, 0]) >= 0.95  # recall@1 of HNSW against exact search
    ivf = idx.build_index(vecs, ids, "ivf")
    assert idx.index_kind(ivf) == "ivf"
    assert np.mean(ei[:, 0] == idx.search(ivf, queries, 1)[1][:, 0]) >= 0.95  # and of IVF
    assert idx.choose_kind("auto", idx.APPROX_FROM) == idx.APPROX_KIND == "ivfpq"
    assert idx.choose_kind("auto", idx.APPROX_FROM - 1) == "flat"


def test_ivfpq_reranks_exactly_keeps_its_settings_and_falls_back_to_exact_when_tiny(tmp_path):
    """IVF-PQ (the approximate default): recall@1 against exact search, scores that are the exact inner
    products of the ids it returns (the unknown threshold compares them), settings that survive a save, and
    exact search for a gallery too small to train the quantizers."""
    rng = np.random.default_rng(3)
    centres = unit(600, seed=4)
    vecs = centres.repeat(5, axis=0) + 0.06 * rng.standard_normal((3000, 128)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    ids = np.arange(7, 3007, dtype=np.int64)
    queries = centres[:200] + 0.06 * rng.standard_normal((200, 128)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    pq = idx.build_index(vecs, ids, "ivfpq")
    assert idx.index_kind(pq) == "ivfpq"
    _, ei = idx.search(idx.build_index(vecs, ids, "flat"), queries, 1)
    ps, pi = idx.search(pq, queries, 3)
    assert np.mean(ei[:, 0] == pi[:, 0]) >= 0.99
    np.testing.assert_allclose(ps, np.take_along_axis(queries @ vecs.T, pi - 7, axis=1), atol=1e-5)
    idx.write_index(pq, tmp_path / "index.faiss")
    back = idx.read_index(tmp_path / "index.faiss")
    assert idx.index_kind(back) == "ivfpq" and np.array_equal(idx.search(back, queries, 3)[1], pi)
    nlist, nprobe = idx.ivfpq_lists(1_000_000)
    assert (nlist, nprobe) == (250, 125) and idx.ivfpq_lists(100_000) == (25, 25)
    assert idx.choose_kind("ivfpq", idx.IVFPQ_MIN_TRAIN - 1) == "flat"
    assert idx.index_kind(idx.build_index(vecs[:50], ids[:50], "ivfpq")) == "flat"
    assert idx.search(idx.build_index(vecs[:0], ids[:0], "ivfpq"), queries[:2], 1)[1].tolist() == [[-1], [-1]]


def _toy_gallery(rule="nearest"):
    g = gallery_mod.Gallery("toy", {"name": "m", "version": "1", "digest": "d1", "kind": "embedder"}, rule=rule)
    base = unit(3, seed=5)
    rng = np.random.default_rng(6)
    for name, b in zip(["ann", "ben", "cat"], base):
        v = b + 0.05 * rng.standard_normal((4, 128)).astype(np.float32)
        g.add_exemplars(name, v / np.linalg.norm(v, axis=1, keepdims=True))
    return g, base


@pytest.mark.parametrize("rule", ["nearest", "knn", "centroid"])
def test_every_rule_names_the_right_person_and_echoes_the_threshold(rule):
    g, base = _toy_gallery(rule)
    g.set_threshold({"value": 0.5, "far": 0.01, "source": "test"})
    stranger = unit(1, seed=99)[0]
    matches = g.search(np.vstack([base, stranger]))
    assert [m.name for m in matches] == ["ann", "ben", "cat", "unknown"]
    assert all(m.threshold == 0.5 and m.rule == rule for m in matches)
    assert matches[3].unknown and matches[3].nearest in {"ann", "ben", "cat"} and matches[3].score < 0.5
    assert abs(matches[0].distance - np.sqrt(2 - 2 * matches[0].score)) < 1e-5
    assert {c.name for c in matches[0].candidates} == {"ben", "cat"}
    # A per-call threshold overrides the calibrated one and is the one echoed.
    strict = g.search(base[:1], threshold=0.9999)[0]
    assert strict.unknown and strict.threshold == pytest.approx(0.9999)


def test_threshold_at_far_accepts_at_most_the_target_share_of_impostors():
    rng = np.random.default_rng(0)
    impostor, genuine = rng.normal(0.2, 0.1, 5000), rng.normal(0.7, 0.1, 500)
    t = threshold_at_far(genuine, impostor, 1e-2)
    assert np.mean(impostor >= t["value"]) <= 1e-2 and t["achieved_far"] <= 1e-2
    assert np.mean(impostor >= t["value"] - 0.01) > 0.005  # and not far stricter than asked
    assert t["tar"] > 0.9
    few = threshold_at_far(genuine, impostor[:50], 1e-3)
    assert "cannot be resolved" in few["note"] and few["value"] > impostor[:50].max()
    gen, imp = self_pairs(unit(4), ["a", "a", "b", "b"])
    assert len(gen) == 2 and len(imp) == 4


def test_model_binding_is_enforced():
    g, base = _toy_gallery()
    with pytest.raises(PreconditionError, match="was built with m v1"):
        g.search(base, model={"name": "other", "version": "1", "digest": "d2"})
    with pytest.raises(PreconditionError):
        g.add_exemplars("ann", base[:1], model={"name": "other", "version": "1", "digest": "d2"})
    with pytest.raises(UserInputError, match="L2-normalised"):
        g.add_exemplars("ann", base[:1] * 3)
    with pytest.raises(UserInputError, match="reserved"):
        g.add_person("unknown")


# --------------------------------------------------------------------------------- enroll and persist


def test_enroll_folder_partial_success_with_reasons(tmp_path, people):
    src = tmp_path / "src"
    shutil.copytree(people / "Ada", src / "Ada")
    (src / "Ada" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    cv2.imwrite(str(src / "Ada" / "blank.png"), np.full((120, 120, 3), 90, np.uint8))
    # Two people in one photo: Ada large in the middle, Bo small in a corner.
    two = np.full((420, 420, 3), 200, np.uint8)
    two[110:310, 110:310] = cv2.resize(read_image(people / "Ada" / "Ada_0001.jpg"), (200, 200))
    two[0:100, 0:100] = cv2.resize(read_image(people / "Bo" / "Bo_0001.jpg"), (100, 100))
    cv2.imwrite(str(src / "Ada" / "group.png"), two)
    shutil.copy(people / "Ada" / "Ada_0001.jpg", src / "Ada" / "copy_of_0001.jpg")
    gs = GalleryStore(tmp_path / "store")
    emb = create_embedder("baseline-lbp")
    g = gs.create("p", emb.version)
    report = Pipeline(create_detector("haar"), emb, g).enroll_folder(src)
    by = {Path(o.source).name: o for o in report.outcomes}
    assert by["corrupt.jpg"].status == "rejected" and by["corrupt.jpg"].reason == "unreadable"
    assert by["blank.png"].reason == "no_face"
    assert by["copy_of_0001.jpg"].reason == "duplicate"
    if by["group.png"].status == "enrolled" and "several faces" in by["group.png"].note:
        crop = g.crop(by["group.png"].exemplar_id)
        assert crop is not None and crop.shape == (160, 160, 3)
    assert len(report.enrolled) >= 2 and len(g.exemplars) == len(report.enrolled)
    v = gs.save(g)
    # Every attempt is recorded in the gallery's sources table, with its reason.
    reloaded = gs.load("p")
    assert reloaded.version == v == 1
    assert {s["reason"].split(":")[0] for s in reloaded.sources if s["status"] == "rejected"} >= {
        "unreadable", "no_face", "duplicate"}


def test_save_load_rename_remove_versions(enrolled):
    gs, g, pipe, _ = enrolled
    assert gs.versions("syn") == [1]
    g2 = gs.load("syn")
    assert {p.name for p in g2.people.values()} == set(ENROLLED)
    ids, vecs = g.ids_and_vectors()
    ids2, vecs2 = g2.ids_and_vectors()
    np.testing.assert_array_equal(ids, ids2)
    np.testing.assert_array_equal(vecs, vecs2)
    assert g2.threshold == g.threshold and g2.model == g.model
    # Rename: a new version; the old one still has the old name.
    g2.rename("Bo", "Bob")
    assert gs.save(g2, action="rename") == 2
    assert gs.load("syn").has_person("Bob") and gs.load("syn", 1).has_person("Bo")
    # Remove: the person's vectors and crops are gone from the new version.
    g3 = gs.load("syn")
    bob = g3.person("Bob")
    crops_before = list((gs.store.current("galleries", "syn") / "crops" / bob.id).glob("*.jpg"))
    assert crops_before
    n = g3.remove("Bob")
    assert n == len(crops_before)
    assert gs.save(g3, action="remove") == 3
    g4 = gs.load("syn")
    assert not g4.has_person("Bob") and all(e.person_id != bob.id for e in g4.exemplars.values())
    assert not (gs.store.current("galleries", "syn") / "crops" / bob.id).exists()
    assert len(g4.ids_and_vectors()[0]) == len(g4.exemplars) == g4.index.ntotal
    assert all(s.get("person") != "Bob" for s in g4.sources)
    with pytest.raises(NotFoundError):
        g4.person("Bob")
    # A stale copy cannot overwrite a newer version.
    stale = gs.load("syn", 1)
    stale.rename("Ada", "Adele")
    with pytest.raises(PreconditionError, match="changed while"):
        gs.save(stale)


@pytest.mark.parametrize("step", ["staged", "crops", "database", "index", "written", "published"])
def test_failure_between_write_steps_keeps_the_previous_version(enrolled, step, monkeypatch):
    gs, g, pipe, _ = enrolled
    g2 = gs.load("syn")
    g2.remove("Ada")

    def boom(name):
        if name == step:
            raise OSError(f"disk full at {name}")

    monkeypatch.setattr(gallery_mod, "STEP_HOOK", boom)
    with pytest.raises(OSError, match="disk full"):
        gs.save(g2)
    monkeypatch.setattr(gallery_mod, "STEP_HOOK", None)
    assert gs.current_version("syn") == 1
    again = gs.load("syn")
    assert again.has_person("Ada") and len(again.exemplars) == len(g.exemplars)
    assert gs.save(again) >= 2  # and the gallery can still be written


def test_killed_writer_leaves_the_previous_version_intact(enrolled, tmp_path):
    gs, g, pipe, _ = enrolled
    script = textwrap.dedent(f"""
        import sys, time
        from iznet.gallery import GalleryStore
        from iznet.gallery import gallery as gm
        def pause(step):
            print(step, flush=True)
            if step == "database":
                time.sleep(60)
        gm.STEP_HOOK = pause
        gs = GalleryStore({str(gs.store.root)!r})
        g = gs.load("syn")
        g.remove("Ada")
        gs.save(g)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if line.strip() == "database":
                break
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    base = gs.store.dir("galleries", "syn")
    assert list(base.glob(".staging-*"))  # the half-written version is there, but hidden
    assert gs.current_version("syn") == 1 and gs.versions("syn") == [1]
    assert gs.load("syn").has_person("Ada")
    assert gs.discard_staging("syn") == 1


def test_reindex_to_a_new_model_keeps_the_old_version_readable(enrolled):
    gs, g, pipe, _ = enrolled
    old_reader = gs.load("syn")
    probe = read_image(next(iter(sorted((Path(next(iter(old_reader.exemplars.values())).source)).parent.glob("*.jpg")))))
    before = pipe.label(probe)
    pixels = create_embedder("baseline-pixels")
    with pytest.raises(PreconditionError):
        Pipeline(create_detector("haar"), pixels, old_reader)
    old, new = reindex(gs, "syn", pixels, make_current=False)
    assert (old, new) == (1, 2)
    assert gs.current_version("syn") == 1  # published, not yet switched
    assert gs.load("syn", 2).model["digest"] == pixels.version["digest"]
    assert gs.load("syn", 2).exemplars.keys() == old_reader.exemplars.keys()
    gs.switch("syn", 2)
    assert gs.current_version("syn") == 2
    # The reader that opened version 1 keeps answering, with version 1's model; v1 is still on disk.
    after = Pipeline(pipe.detector, create_embedder("baseline-lbp"), old_reader).label(probe)
    assert [f.identity.to_json() for f in after.faces] == [f.identity.to_json() for f in before.faces]
    assert gs.load("syn", 1).model["name"] == "baseline-lbp"
    # The current gallery now needs the new model, and names the enrolled photo with it.
    with pytest.raises(PreconditionError):
        Pipeline.from_store(gs.store.root, "syn", model="baseline-lbp")
    fresh = Pipeline.from_store(gs.store.root, "syn")
    assert fresh.embedder.version["name"] == "baseline-pixels"
    res = fresh.label(probe)
    assert res.gallery["version"] == 2 and res.embedder["name"] == "baseline-pixels"


def test_no_crops_gallery_cannot_be_reindexed(tmp_path, people):
    gs = GalleryStore(tmp_path / "store")
    emb = create_embedder("baseline-lbp")
    g = gs.create("private", emb.version, keep_crops=False)
    Pipeline(create_detector("haar"), emb, g).enroll_folder(people, people=["Ada"])
    gs.save(g)
    assert not (gs.store.current("galleries", "private") / "crops").exists()
    with pytest.raises(PreconditionError, match="privacy"):
        reindex(gs, "private", create_embedder("baseline-pixels"))


# ------------------------------------------------------------------------------------------- pipeline


def test_label_names_enrolled_photos_and_answers_bad_input_clearly(enrolled, people):
    gs, g, pipe, report = enrolled
    src = next(o for o in report.enrolled if "Ada" in o.source)
    res = pipe.label(Path(src.source))
    assert len(res.faces) == 1
    face = res.faces[0]
    assert face.name == "Ada" and face.identity.score > 0.99 and face.identity.threshold == g.threshold_value
    js = res.to_json()
    assert js["gallery"]["name"] == "syn" and js["gallery"]["version"] == 1
    assert js["embedder"]["digest"] == g.model["digest"] and js["detector"]["name"] == "haar"
    assert set(js["timings_ms"]) >= {"decode", "locate", "identify", "total"}
    json.dumps(js)
    # No face: an empty answer, not an error.
    assert pipe.label(np.full((300, 400, 3), 30, np.uint8)).faces == []
    # Corrupt, empty and oversized photos: clear errors.
    with pytest.raises(ImageError, match="not a readable image|corrupt"):
        pipe.label(b"GIF89a broken")
    with pytest.raises(ImageError, match="empty"):
        pipe.label(b"")
    small_limit = Pipeline(pipe.detector, pipe.embedder, g, max_pixels=10_000)
    with pytest.raises(UserInputError, match="too large"):
        small_limit.label(read_image(src.source))
    # A tiny face is reported but not recognised.
    strict = Pipeline(pipe.detector, pipe.embedder, g, min_face=500)
    tiny = strict.label(Path(src.source))
    assert tiny.faces and tiny.faces[0].name == "unknown" and "too small" in tiny.faces[0].note


def test_annotated_photo_has_red_boxes_and_keeps_its_size(enrolled):
    gs, g, pipe, report = enrolled
    from iznet.drawing import annotate

    for side in (120, 3000):
        img = np.full((side, side, 3), 128, np.uint8)
        res = pipe.label(cv2.resize(read_image(report.enrolled[0].source), (side, side)))
        out = annotate(img, res.faces)
        assert out.shape == img.shape
        red = (out[:, :, 2] > 200) & (out[:, :, 1] < 60) & (out[:, :, 0] < 60)
        assert red.sum() > side  # boxes and label backgrounds are drawn
        assert (out[:, :, 0] > 200).sum() > 0  # white lettering


# ------------------------------------------------------------------------------------------------ CLI


def test_cli_enroll_list_rename_remove_info_reindex_label(tmp_path, people, capsys):
    store = str(tmp_path / "store")
    src = tmp_path / "src"
    for p in ENROLLED:
        shutil.copytree(people / p, src / p)
    assert main(["gallery", "enroll", "g1", str(src), "--store", store, "--quiet",
                 "--model", "baseline-lbp", "--detector", "haar"]) == 0
    out = capsys.readouterr().out
    assert "gallery g1 version 1: 3 people" in out and "threshold" in out
    assert main(["gallery", "list", "g1", "--store", store, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {p["name"] for p in listed["people"]} == set(ENROLLED)
    # Add to one person: single photos (another person's photo, to be sure it is a new exemplar).
    # A photo in which no face is found (Haar finds none of Flo's) enrolls nothing and writes no version.
    flo = sorted((people / "Flo").iterdir())[0]
    assert main(["gallery", "enroll", "g1", str(flo), "--person", "Ada", "--store", store, "--quiet"]) == 2
    assert "no new version written, version 1 stays current" in capsys.readouterr().err
    extra = tmp_path / "ada_mirrored.jpg"  # a new photo of Ada: one of hers, mirrored
    write_image(extra, read_image(sorted((people / "Ada").iterdir())[0])[:, ::-1].copy())
    assert main(["gallery", "enroll", "g1", str(extra), "--person", "Ada", "--store", store, "--quiet"]) == 0
    assert "gallery g1 version 2" in capsys.readouterr().out
    assert main(["gallery", "rename", "g1", "Bo", "Bob", "--store", store]) == 0
    assert main(["gallery", "remove", "g1", "Di", "--store", store]) == 0
    assert main(["gallery", "remove", "g1", "Nobody", "--store", store]) == 2
    assert "error: no person 'Nobody'" in capsys.readouterr().err
    assert main(["gallery", "reindex", "g1", "--model", "baseline-pixels", "--store", store, "--quiet"]) == 0
    capsys.readouterr()
    assert main(["gallery", "info", "g1", "--store", store]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["version"] == 5 and info["model"]["name"] == "baseline-pixels" and info["versions"] == [1, 2, 3, 4, 5]
    assert [h["action"].split()[0] for h in info["history"]] == ["enroll", "enroll", "rename", "remove", "reindex"]
    assert main(["gallery", "list", "g1", "--store", store, "--json"]) == 0
    assert {p["name"] for p in json.loads(capsys.readouterr().out)["people"]} == {"Ada", "Bob"}
    photo = sorted((src / "Ada").iterdir())[0]
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    outdir = tmp_path / "out"
    code = main(["label", str(photo), str(bad), "-g", "g1", "--store", store, "-o", str(outdir)])
    captured = capsys.readouterr()
    assert code == 2 and "error:" in captured.err and "Traceback" not in captured.err
    res = json.loads((outdir / f"{photo.stem}.json").read_text())
    assert res["faces"][0]["name"] == "Ada" and res["gallery"]["version"] == 5
    assert {"box", "score", "distance", "threshold", "unknown"} <= set(res["faces"][0])
    assert read_image(outdir / f"{photo.stem}.labelled.jpg").shape == read_image(photo).shape
    # Another model is refused with one clear line.
    assert main(["label", str(photo), "-g", "g1", "--store", store, "--model", "baseline-lbp"]) == 2
    assert "was built with baseline-pixels" in capsys.readouterr().err
    assert main(["label", str(photo), "-g", "nope", "--store", store]) == 2
    assert "no gallery 'nope'" in capsys.readouterr().err


def test_a_gallery_made_without_a_detector_records_the_default_one(tmp_path):
    """Labelling uses the gallery's recorded detector: one made in code without naming a detector must not
    fall back to another (it once recorded Haar, so Pipeline.from_store labelled with Haar)."""
    from iznet.gallery import GalleryStore
    from iznet.registry import DEFAULT_DETECTOR

    gs = GalleryStore(tmp_path / "store")
    g = gs.create("people", {"name": "baseline-pixels", "version": "1"})
    assert g.detector == DEFAULT_DETECTOR
    gs.save(g)
    assert gs.load("people").detector == DEFAULT_DETECTOR
