"""The gateway's logic without Ray: GatewayCore driven directly against the three real services answers as
the in-process pipeline does, and refuses bad options with INVALID_ARGUMENT."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from iznet import wire
from iznet.pipeline import LabelOptions
from iznet.v1 import common_pb2, gateway_pb2
from services.gateway import GatewayConfig, GatewayCore, GatewayError
from services.stack import Stack, StackConfig
from tests.services.conftest import MODEL


@pytest.fixture(scope="module")
def services(world):
    st = Stack(StackConfig(store=world.store.root, model=MODEL, detector="haar", poll_s=0))
    try:
        for name in ("detection", "embedding", "gallery"):
            st.start_service(name)
        yield {**{n: p.address for n, p in st.procs.items()}, "token": st.token}
    finally:
        st.stop()


def _request(photo: bytes, **opts) -> gateway_pb2.LabelRequest:
    return gateway_pb2.LabelRequest(image=common_pb2.Image(data=photo, id="p"),
                                    options=wire.options_pb(LabelOptions(**opts)))


def test_gateway_core_answers_like_the_pipeline_without_ray(world, services, monkeypatch):
    monkeypatch.setenv("IZNET_SERVICE_TOKEN", services["token"])  # what the stack hands its gateway
    photo = world.group_photo(world.people)
    bad = gateway_pb2.LabelRequest(image=common_pb2.Image(data=photo), options=gateway_pb2.LabelOptions(
        threshold=float("nan")))

    async def go():  # one event loop for the core's channels
        core = GatewayCore(GatewayConfig(services["detection"], services["embedding"], services["gallery"]))
        answers = [await core.Label(_request(photo)), await core.Label(_request(photo, min_face=5000))]
        with pytest.raises(GatewayError) as e:
            await core.Label(bad)
        return answers, e.value

    (full, small), error = asyncio.run(go())
    remote, small = wire.label_result_from_pb(full), wire.label_result_from_pb(small)
    local = world.pipeline().label(photo, image_id="p")
    assert [f.name for f in remote.faces] == [f.name for f in local.faces] and len(local.faces) >= 3
    assert [f.box.as_list() for f in remote.faces] == [f.box.as_list() for f in local.faces]
    assert remote.embedder.digest == local.embedder.digest and remote.gallery == local.gallery
    assert small.faces and all(f.unknown and "too small" in f.note for f in small.faces)
    assert all(f.threshold == pytest.approx(local.gallery.threshold, abs=1e-6) for f in small.faces)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and "threshold" in error.details
