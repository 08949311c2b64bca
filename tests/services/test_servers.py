"""The three gRPC services as real processes (no gateway): health, reflection, batches, error codes with their
reasons, deadlines, metrics, version switches, graceful shutdown."""

from __future__ import annotations

import time
import urllib.request

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from iznet.imageio import encode_image
from iznet.registry import create_embedder
from iznet.serving import publish_model
from iznet.v1 import common_pb2, detection_pb2, detection_pb2_grpc, embedding_pb2, embedding_pb2_grpc
from iznet.v1 import gallery_pb2, gallery_pb2_grpc
from services.common import keyed_channel
from services.stack import Proc, Stack, StackConfig
from tests.services.conftest import MODEL

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def services(world):
    st = Stack(StackConfig(store=world.store.root, model=MODEL, detector="haar", poll_s=0.3))
    for name in ("detection", "embedding", "gallery"):
        st.start_service(name)
    yield st
    st.stop()


def stub(services, name, cls):
    """A stub that sends the stack's service token (a read-only key), as the gateway does."""
    return cls(keyed_channel(services.procs[name].address, services.token))


def test_health_and_reflection_on_every_server(services):
    for name, full in [("detection", "iznet.v1.Detection"), ("embedding", "iznet.v1.Embedding"),
                       ("gallery", "iznet.v1.Gallery")]:
        channel = grpc.insecure_channel(services.procs[name].address)
        health = health_pb2_grpc.HealthStub(channel)
        assert health.Check(health_pb2.HealthCheckRequest(service=full), timeout=5).status == \
            health_pb2.HealthCheckResponse.SERVING
        refl = reflection_pb2_grpc.ServerReflectionStub(channel)
        answer = next(refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                                timeout=5))
        listed = {s.name for s in answer.list_services_response.service}
        assert {full, "grpc.health.v1.Health"} <= listed


def test_detect_batches_and_reports_bad_images_per_image(world, services):
    det = stub(services, "detection", detection_pb2_grpc.DetectionStub)
    photo = world.groups(2)[0]
    resp = det.Detect(detection_pb2.DetectRequest(images=[common_pb2.Image(data=photo, id="a"),
                                                          common_pb2.Image(data=b"nope", id="b")], crop_size=64),
                      timeout=30)
    a, b = resp.results
    assert len(a.faces) == 2 and all(len(f.crop) > 0 for f in a.faces) and not a.error
    assert b.image_id == "b" and "not a readable image" in b.error
    assert resp.model.kind == "detector" and resp.model.digest.startswith("sha256:")
    with pytest.raises(grpc.RpcError) as e:
        det.Detect(detection_pb2.DetectRequest(), timeout=5)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "empty" in e.value.details()


def test_raw_crops_go_from_detection_to_embedding_unchanged(world, services):
    """The gateway's path: detection hands crops over as raw pixels, the embedding service takes them as they
    are, and the vectors equal those of the PNG-encoded crops (lossless either way)."""
    from iznet import wire
    from iznet.imageio import decode_image

    det = stub(services, "detection", detection_pb2_grpc.DetectionStub)
    emb = stub(services, "embedding", embedding_pb2_grpc.EmbeddingStub)
    photo = world.groups(2)[0]
    png = det.Detect(detection_pb2.DetectRequest(images=[common_pb2.Image(data=photo)], crop_size=64),
                     timeout=30).results[0].faces
    raw = det.Detect(detection_pb2.DetectRequest(images=[common_pb2.Image(data=photo)], crop_size=64,
                                                 raw_crops=True), timeout=30).results[0].faces
    assert len(raw) == len(png) == 2 and all(not f.crop and f.HasField("crop_pixels") for f in raw)
    for r, p in zip(raw, png):
        assert (r.crop_pixels.width, r.crop_pixels.height) == (64, 64)
        assert np.array_equal(wire.pixels_from_pb(r.crop_pixels, 64 * 64), decode_image(p.crop))
    v_raw = emb.Embed(embedding_pb2.EmbedRequest(crops=[common_pb2.Image(pixels=f.crop_pixels) for f in raw]),
                      timeout=10).vectors
    v_png = emb.Embed(embedding_pb2.EmbedRequest(crops=[common_pb2.Image(data=f.crop) for f in png]),
                      timeout=10).vectors
    assert np.allclose([v.values for v in v_raw], [v.values for v in v_png], atol=1e-6)
    # pixels that do not add up are one clear error naming the crop
    bad = common_pb2.Image(pixels=common_pb2.Pixels(width=64, height=64, bgr=b"\0" * 100), id="short")
    with pytest.raises(grpc.RpcError) as e:
        emb.Embed(embedding_pb2.EmbedRequest(crops=[bad]), timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "crop 0 (short)" in e.value.details() and "is not 64x64x3" in e.value.details()


def test_deadline_is_honoured(world, services):
    det = stub(services, "detection", detection_pb2_grpc.DetectionStub)
    photo = world.groups(2)[0]
    start = time.monotonic()
    with pytest.raises(grpc.RpcError) as e:
        det.Detect(detection_pb2.DetectRequest(images=[common_pb2.Image(data=photo)] * 200), timeout=0.3)
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - start < 2
    # and the server is free again soon (the abandoned batch stopped at the deadline)
    det.Detect(detection_pb2.DetectRequest(images=[common_pb2.Image(data=photo)]), timeout=10)


def test_oversized_message_is_refused_by_the_limit(services):
    det = stub(services, "detection", detection_pb2_grpc.DetectionStub)
    with pytest.raises(grpc.RpcError) as e:
        det.Detect(detection_pb2.DetectRequest(images=[common_pb2.Image(data=b"x" * (40 * 2**20))]), timeout=10)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_gallery_refuses_vectors_of_another_model_and_unknown_galleries(world, services):
    gal = stub(services, "gallery", gallery_pb2_grpc.GalleryStub)
    other = create_embedder("baseline-pixels")
    crop = np.full((160, 160, 3), 120, np.uint8)
    vec = common_pb2.Vector(values=other.embed([crop])[0].tolist())
    with pytest.raises(grpc.RpcError) as e:
        gal.Search(gallery_pb2.SearchRequest(vectors=[vec], model_digest=other.version["digest"]), timeout=5)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "reindex" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        gal.Search(gallery_pb2.SearchRequest(gallery="missing", vectors=[vec], model_digest=other.version["digest"]),
                   timeout=5)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND and "missing" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        gal.Search(gallery_pb2.SearchRequest(vectors=[common_pb2.Vector(values=[1.0, 2.0])],
                                             model_digest=other.version["digest"]), timeout=5)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    people = gal.ListPeople(gallery_pb2.ListPeopleRequest(), timeout=5)
    assert sorted(p.name for p in people.people) == world.people


def test_embed_batch_corrupt_crop_and_metrics(services):
    emb = stub(services, "embedding", embedding_pb2_grpc.EmbeddingStub)
    crops = [common_pb2.Image(data=encode_image(np.full((96, 96, 3), v, np.uint8), ".png")) for v in (50, 90, 200)]
    resp = emb.Embed(embedding_pb2.EmbedRequest(crops=crops), timeout=10)
    vecs = np.array([v.values for v in resp.vectors])
    assert vecs.shape == (3, 128) and np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)
    with pytest.raises(grpc.RpcError) as e:
        emb.Embed(embedding_pb2.EmbedRequest(crops=[crops[0], common_pb2.Image(data=b"bad", id="c2")]), timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "crop 1" in e.value.details()
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{services.procs['embedding'].info['metrics_port']}/metrics",
                                     timeout=5).read().decode()
    assert 'iznet_grpc_requests_total{code="OK",method="Embed",service="embedding"}' in metrics
    assert 'iznet_grpc_requests_total{code="INVALID_ARGUMENT",method="Embed",service="embedding"}' in metrics
    assert 'iznet_batch_size_bucket{le="4.0",method="Embed",service="embedding"}' in metrics
    assert "iznet_grpc_latency_seconds_count" in metrics


def test_new_model_version_is_served_and_the_old_one_stays_pinnable(world, services):
    emb = stub(services, "embedding", embedding_pb2_grpc.EmbeddingStub)
    old = emb.GetModel(common_pb2.GetModelRequest(), timeout=5)
    publish_model(world.store, MODEL, "baseline-pixels")
    new_digest = create_embedder("baseline-pixels").version["digest"]
    deadline = time.monotonic() + 10
    while emb.GetModel(common_pb2.GetModelRequest(), timeout=5).digest != new_digest:
        assert time.monotonic() < deadline, "new model version not picked up"
        time.sleep(0.1)
    crop = [common_pb2.Image(data=encode_image(np.full((96, 96, 3), 80, np.uint8), ".png"))]
    assert emb.Embed(embedding_pb2.EmbedRequest(crops=crop), timeout=5).model.digest == new_digest
    pinned = emb.Embed(embedding_pb2.EmbedRequest(crops=crop, model_digest=old.digest), timeout=5)
    assert pinned.model.digest == old.digest
    with pytest.raises(grpc.RpcError) as e:
        emb.Embed(embedding_pb2.EmbedRequest(crops=crop, model_digest="sha256:nope"), timeout=5)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_sigterm_shuts_down_gracefully(world, services):
    proc = Proc("detection-2", services._service_args("detection"), services.log_dir / "detection-2.log")
    proc.start(services.env_for("detection"), 60)  # a second detection server, to stop
    health = health_pb2_grpc.HealthStub(grpc.insecure_channel(proc.address))
    assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == health_pb2.HealthCheckResponse.SERVING
    assert proc.stop() == 0
    assert "stopped" in proc.log_path.read_text()
