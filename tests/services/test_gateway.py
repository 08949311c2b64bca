"""End to end with real processes: the three services and the Ray Serve gateway (one stack for the module,
since Ray is slow to start), labelling generated people over gRPC.

Covers: the right names on a group photo, the same answer as the in-process pipeline, the annotated photo,
bad input with its code, API keys, LabelMany, a bounded concurrent load with no errors and shared embedding
batches, the embedding service stopped under load (clean UNAVAILABLE) and restarted (the gateway recovers by
itself), and a new (gallery, model) pair published under load (no call dropped, no answer mixes two pairs).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest

from iznet.client import GatewayClient, GatewayError
from iznet.detection.teachers import make_teacher
from iznet.imageio import decode_image
from iznet.stages import LocalPipeline
from iznet.standin import enroll_folders, load_embedder_dir, open_gallery, publish_standin_model
from services.stack import Stack, StackConfig

pytestmark = pytest.mark.slow
API_KEY = "test-key"


@pytest.fixture(scope="module")
def stack(world):
    st = Stack(StackConfig(store=world.store.root, api_keys=[API_KEY], poll_s=0.5))
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


def test_label_group_photo_names_everyone_like_the_pipeline_in_process(world, client):
    names = world.people  # one held-out portrait of each enrolled person, side by side
    photo = world.group_photo(names)
    result = client.label(photo, annotate=True)
    assert by_x(result) == names
    assert result.embedder.digest == result.gallery.model.digest != ""
    assert result.detector.name == "haar" and result.gallery.name == "default"
    assert {"detect", "embed", "search", "draw", "total"} <= set(result.timings_ms)
    annotated = decode_image(result.annotated)
    assert annotated.shape[:2] == (result.height, result.width)
    red = (annotated[..., 2] > 200) & (annotated[..., 1] < 60) & (annotated[..., 0] < 60)
    assert red.sum() > 100, "no red boxes drawn"

    # The same photo through the same stages in one process: the same faces, names and distances.
    local = LocalPipeline(make_teacher("haar"), load_embedder_dir(world.store.current("models", "standin-pixels")),
                          open_gallery(world.store.current("galleries", "default"))).label(decode_image(photo))
    assert [f.match.name for f in sorted(local.faces, key=lambda f: f.box.x1)] == by_x(result)
    remote = sorted(result.faces, key=lambda f: f.box[0])
    for lf, rf in zip(sorted(local.faces, key=lambda f: f.box.x1), remote):
        assert np.allclose(lf.box.as_list(), rf.box, atol=0.5)
        assert abs(lf.match.distance - rf.distance) < 1e-4


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
        client.label(world.groups(2)[0][0], gallery="nobody-here")
    assert e.value.code == "NOT_FOUND" and "nobody-here" in e.value.details
    with GatewayClient(stack.gateway, api_key="wrong") as intruder:
        with pytest.raises(GatewayError) as e:
            intruder.label(world.group_photo(world.people[:1]))
    assert e.value.code == "UNAUTHENTICATED"


def test_label_many_streams_in_order_and_reports_bad_photos(world, client):
    (a, names_a), (b, names_b) = world.groups(2)[:2]
    results = list(client.label_many([a, b"junk", b]))
    assert [by_x(r) for r in results] == [names_a, [], names_b]
    assert results[1].error and not results[0].error


def _load(client, photos, n, workers=8, stop=None):
    """``n`` Label calls from ``workers`` threads; returns the results and the error codes seen."""
    results, errors = [], Counter()
    lock = threading.Lock()

    def one(i):
        if stop is not None and stop.is_set():
            return
        try:
            r = client.label(photos[i % len(photos)], timeout=30)
            with lock:
                results.append(r)
        except GatewayError as exc:
            with lock:
                errors[exc.code] += 1

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, range(n)))
    return results, errors


def test_concurrent_clients_see_no_errors_and_share_embedding_batches(world, client):
    photos = [photo for photo, _ in world.groups(2)]
    assert len(photos) >= 3
    start = time.perf_counter()
    results, errors = _load(client, photos, 200, workers=8)
    took = time.perf_counter() - start
    assert not errors and len(results) == 200
    assert all(len(r.faces) == 2 and "unknown" not in r.names for r in results)
    # Concurrent requests were embedded together: some call carried more crops than one photo has.
    assert max(r.timings_ms["embed.batch_crops"] for r in results) > 2
    print(f"200 Label calls from 8 threads in {took:.1f}s")


def test_embedding_service_down_under_load_gives_unavailable_then_recovers(world, client, stack):
    photo, names = world.groups(2)[0]
    photos = [photo]
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
            assert by_x(client.label(photos[0], timeout=30)) == names
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
    before = client.label(world.groups(2)[0][0])
    # Re-embed the gallery with a new model (another seed: other vectors, another digest), publish the gallery
    # first and then the model: every answer must come from one consistent pair, and none may fail.
    new_model = load_embedder_dir_from_seed(store, seed=2)
    photos = [photo for photo, _ in world.groups(2)]
    stop = threading.Event()
    outcome = {}

    def load():
        outcome["results"], outcome["errors"] = _load(client, photos, 10_000, workers=4, stop=stop)

    t = threading.Thread(target=load)
    t.start()
    time.sleep(1.0)
    enroll_folders(store, "default", world.root / "enroll", new_model, make_teacher("haar"))
    time.sleep(1.5)
    publish_standin_model(store, "standin-pixels", seed=2)
    deadline = time.monotonic() + 20
    while client.label(photos[0]).embedder.digest != new_model.version["digest"]:
        assert time.monotonic() < deadline, "the new model was not picked up"
        time.sleep(0.2)
    time.sleep(1.0)
    stop.set()
    t.join(60)
    results, errors = outcome["results"], outcome["errors"]
    assert not errors, errors
    pairs = Counter((r.embedder.digest, r.gallery.model.digest, r.gallery.version) for r in results)
    assert all(e == g for e, g, _ in pairs), f"an answer mixed two models: {pairs}"
    assert {e for e, _, _ in pairs} == {before.embedder.digest, new_model.version["digest"]}, pairs
    assert all("unknown" not in r.names for r in results)
    print("answers per (model, gallery model, gallery version):", dict(pairs))


def load_embedder_dir_from_seed(store, seed):
    from iznet.standin import StandInEmbedder

    return StandInEmbedder(seed=seed, version=str(len(store.versions("models", "standin-pixels")) + 1))
