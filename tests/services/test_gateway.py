"""End to end with real processes: the three services and the Ray Serve gateway (one stack for the module,
since Ray is slow to start), labelling generated people over gRPC.

Covers: the right names on a group photo, the same answer as the in-process pipeline, the annotated photo,
bad input with its code, API keys, LabelMany, a bounded concurrent load with no errors and shared embedding
batches, the embedding service stopped under load (clean UNAVAILABLE) and restarted (the gateway recovers by
itself), and a new (gallery, model) pair published under load (no call dropped, no answer mixes two pairs).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest

from iznet.client import GatewayClient, GatewayError
from iznet.gallery import GalleryStore, reindex
from iznet.registry import create_embedder
from iznet.imageio import decode_image
from iznet.serving import publish_model
from services.stack import Stack, StackConfig
from tests.services.conftest import MODEL

pytestmark = pytest.mark.slow
API_KEY = "test-key"


@pytest.fixture(scope="module")
def stack(world):
    st = Stack(StackConfig(store=world.store.root, model=MODEL, detector="haar", api_keys=[API_KEY], poll_s=0.5,
                           extra_gateway_args=["--batch-wait-ms", "100"]))
    st.start()
    yield st
    codes = st.stop()
    assert codes == {"gateway": 0, "detection": 0, "embedding": 0, "gallery": 0}, codes  # clean shutdowns


@pytest.fixture(scope="module")
def client(stack):
    with GatewayClient(stack.gateway, api_key=API_KEY, timeout=60) as c:
        yield c


def by_x(result):
    return [f.name for f in sorted(result.faces, key=lambda f: f.box[0])]


def expected(world, photo: bytes, gallery: str = "default"):
    """The in-process Pipeline's answer: [(box, name, score)] in reading order."""
    res = world.pipeline(gallery).label(photo)
    return [(f.box.as_list(), f.name, f.identity.score) for f in res.faces]


def answer(result):
    return [([round(v, 2) for v in f.box], f.name, f.score) for f in result.faces]


def same(a, b) -> bool:
    return len(a) == len(b) and all(np.allclose(x[0], y[0], atol=0.02) and x[1] == y[1] and abs(x[2] - y[2]) < 1e-4
                                    for x, y in zip(a, b))


def test_label_names_real_people_in_a_group_photo(world, client, shared_data):
    if not world.has_frk:
        pytest.skip("needs face_recognition_knn in the shared data")
    test = shared_data / "face_recognition_knn" / "test"
    result = client.label(test / "kit_with_rose.jpg", gallery="frk", annotate=True)
    assert [f.name for f in result.faces if not f.unknown] == ["rose_leslie", "kit_harington"]  # left to right
    assert result.gallery.name == "frk" and result.embedder.digest == result.gallery.model.digest
    obama = client.label(test / "obama1.jpg", gallery="frk")  # not enrolled
    assert [f.name for f in obama.faces] == ["unknown"] and obama.faces[0].score < obama.faces[0].threshold


def test_label_answers_as_the_pipeline_in_process(world, client):
    photo = world.group_photo(world.people)  # one unenrolled portrait of each person, side by side
    result = client.label(photo, annotate=True)
    assert same(answer(result), expected(world, photo))
    assert len(result.faces) >= 3
    assert result.embedder.digest == result.gallery.model.digest != ""
    assert result.detector.name == "haar" and result.gallery.name == "default"
    assert result.embedder.name == "baseline-lbp"
    assert {"detect", "embed", "search", "draw", "total"} <= set(result.timings_ms)
    annotated = decode_image(result.annotated)
    assert annotated.shape[:2] == (result.height, result.width)
    red = (annotated[..., 2] > 200) & (annotated[..., 1] < 60) & (annotated[..., 0] < 60)
    assert red.sum() > 100, "no red boxes drawn"


def _without_timings(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k != "timings_ms"}


def _same_json(a, b, tol: float = 1e-5) -> bool:
    """Equal JSON, floats within ``tol`` (the services batch their vectors differently: last-digit noise)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_json(a[k], b[k], tol) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same_json(x, y, tol) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and abs(a - b) <= tol
    return a == b


def test_the_gateway_writes_the_same_json_as_the_pipeline_in_process(world, client):
    """One labelling path: a known person, a stranger, a face below the minimum size and a photo with no
    face, labelled in this process and through the gateway, give the same JSON (timings aside)."""
    from iznet.pipeline import LabelOptions

    cases = [("group", world.group_photo(world.people), "default", {}),
             ("all too small", world.group_photo(world.people[:2]), "default", {"min_face": 10_000}),
             ("no face", cv2.imencode(".jpg", np.full((240, 320, 3), 90, np.uint8))[1].tobytes(), "default", {}),
             ("strict", world.group_photo(world.people[:2]), "default", {"threshold": 0.999, "min_score": 1.0})]
    if world.has_frk:  # real people: Obama is not in the frk gallery, the others are
        from iznet.config import shared_data_dir

        frk = shared_data_dir() / "face_recognition_knn" / "test"
        cases += [("stranger and known", (frk / "obama_and_biden.jpg").read_bytes(), "frk", {}),
                  ("known", (frk / "kit_with_rose.jpg").read_bytes(), "frk", {})]
    seen_notes, seen_unknown = set(), 0
    for what, photo, gallery, opts in cases:
        local = world.pipeline(gallery).label(photo, image_id=what, options=LabelOptions(**opts))
        remote = client.label(photo, image_id=what, gallery=gallery, **opts)
        a, b = _without_timings(local.to_json()), _without_timings(remote.to_json())
        assert _same_json(a, b), f"{what}: in-process and gateway answers differ:\n{json.dumps(a)}\n{json.dumps(b)}"
        seen_notes |= {f.get("note", "")[:9] for f in a["faces"]}
        seen_unknown += sum(f["unknown"] for f in a["faces"])
    assert "too small" in seen_notes and seen_unknown > 0
    empty = client.label(cases[2][1], gallery="default")
    assert empty.faces == [] and empty.gallery.threshold > 0 and empty.embedder.digest  # versions still named


def test_label_through_the_cli(world, stack, tmp_path, capsys):
    from iznet.cli import main

    photo = tmp_path / "group.jpg"
    photo.write_bytes(world.groups(2)[0])
    assert main(["label", str(photo), "--server", stack.gateway, "--api-key", API_KEY, "-o", str(tmp_path / "o")]) == 0
    doc = json.loads((tmp_path / "o" / "group.json").read_text())
    assert [f["name"] for f in doc["faces"]] == [x[1] for x in expected(world, photo.read_bytes())]
    assert (tmp_path / "o" / "group.labelled.jpg").stat().st_size > 0


def test_bad_input_gets_its_code_and_reason(world, client, stack):
    with pytest.raises(GatewayError) as e:
        client.label(b"\xff\xd8 not really a jpeg")
    assert e.value.code == "INVALID_ARGUMENT" and "image" in e.value.details
    huge = cv2.imencode(".png", np.zeros((9000, 9000, 3), np.uint8))[1].tobytes()  # 81 Mpx > 64 Mpx limit
    with pytest.raises(GatewayError) as e:
        client.label(huge)
    assert e.value.code == "INVALID_ARGUMENT" and "too large" in e.value.details
    with pytest.raises(GatewayError) as e:
        client.label(b"")
    assert e.value.code == "INVALID_ARGUMENT"
    with pytest.raises(GatewayError) as e:
        client.label(world.groups(2)[0], gallery="nobody-here")
    assert e.value.code == "NOT_FOUND" and "nobody-here" in e.value.details
    with GatewayClient(stack.gateway, api_key="wrong") as intruder:
        with pytest.raises(GatewayError) as e:
            intruder.label(world.group_photo(world.people[:1]))
    assert e.value.code == "UNAUTHENTICATED"


def test_label_many_streams_in_order_and_reports_bad_photos(world, client):
    a, b = world.groups(2)[:2]
    results = list(client.label_many([a, b"junk", b]))
    # Same answers as one Label each (scores within float noise: the crops may be embedded in other batches).
    assert same(answer(results[0]), answer(client.label(a))) and same(answer(results[2]), answer(client.label(b)))
    assert same(answer(results[0]), expected(world, a)) and same(answer(results[2]), expected(world, b))
    assert results[1].error and not results[0].error


def _load(client, photos, n, workers=8, stop=None):
    """``n`` Label calls from ``workers`` threads; returns the results and the error codes seen."""
    results, errors = [], Counter()
    lock = threading.Lock()

    def one(i):
        if stop is not None and stop.is_set():
            return
        try:
            photo = photos[i % len(photos)]
            r = client.label(photo, timeout=30)
            with lock:
                results.append((r, photo))
        except GatewayError as exc:
            with lock:
                errors[exc.code] += 1

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, range(n)))
    return results, errors


def test_concurrent_clients_see_no_errors_and_share_embedding_batches(world, client):
    photos = world.groups(2)
    assert len(photos) >= 3
    want = {p: expected(world, p) for p in photos}
    start = time.perf_counter()
    results, errors = _load(client, photos, 200, workers=8)
    took = time.perf_counter() - start
    assert not errors and len(results) == 200
    assert all(same(answer(r), want[p]) for r, p in results)
    # Concurrent requests were embedded together: some call carried more crops than one photo has.
    assert max(r.embedding_batch for r, _ in results) > 2
    print(f"200 Label calls from 8 threads in {took:.1f}s")


def test_embedding_service_down_under_load_gives_unavailable_then_recovers(world, client, stack):
    photo = world.groups(2)[0]
    photos = [photo]
    want = expected(world, photo)
    stop = threading.Event()
    outcome = {}

    def load():
        outcome["results"], outcome["errors"] = _load(client, photos, 400, workers=4, stop=stop)

    t = threading.Thread(target=load)
    t.start()
    time.sleep(1.0)
    stack.procs["embedding"].kill()  # a crash, not a graceful stop
    time.sleep(2.0)
    with pytest.raises(GatewayError) as e:
        client.label(photos[0], timeout=30)
    assert e.value.code == "UNAVAILABLE" and "embedding" in e.value.details
    stack.restart_service("embedding")
    deadline = time.monotonic() + 20
    while True:  # the gateway finds the restarted service by itself
        try:
            assert same(answer(client.label(photo, timeout=30)), want)
            break
        except GatewayError:
            assert time.monotonic() < deadline, "gateway did not recover"
            time.sleep(0.2)
    stop.set()
    t.join(60)
    assert set(outcome["errors"]) <= {"UNAVAILABLE"}, outcome["errors"]  # clean codes only, never INTERNAL
    assert outcome["results"], "no call succeeded around the outage"


def test_new_gallery_and_model_switch_under_load_without_drops_or_mixing(world, client, stack):
    store = world.store
    photos = world.groups(2)
    before = client.label(photos[0])
    new_model = create_embedder("baseline-pixels")
    stop = threading.Event()
    outcome = {}

    def load():
        outcome["results"], outcome["errors"] = _load(client, photos, 10_000, workers=4, stop=stop)

    t = threading.Thread(target=load)
    t.start()
    time.sleep(1.0)
    # A new model: re-embed the gallery from its stored crops (a new gallery version, made current), then
    # publish the model. Every answer must come from one consistent pair, and none may fail.
    reindex(GalleryStore(store), "default", new_model)
    time.sleep(1.5)
    publish_model(store, MODEL, "baseline-pixels")
    deadline = time.monotonic() + 20
    while client.label(photos[0]).embedder.digest != new_model.version["digest"]:
        assert time.monotonic() < deadline, "the new model was not picked up"
        time.sleep(0.2)
    time.sleep(1.0)
    stop.set()
    t.join(60)
    results, errors = outcome["results"], outcome["errors"]
    assert not errors, errors
    pairs = Counter((r.embedder.digest, r.gallery.model.digest, r.gallery.version) for r, _ in results)
    assert all(e == g for e, g, _ in pairs), f"an answer mixed two models: {pairs}"
    assert {e for e, _, _ in pairs} == {before.embedder.digest, new_model.version["digest"]}, pairs
    after = client.label(photos[0])
    assert same(answer(after), expected(world, photos[0]))  # in-process, the store's current pair too
    print("answers per (model, gallery model, gallery version):", dict(pairs))
