"""The checked-in generated gRPC code must be exactly what `make protos` builds from protos/."""

from pathlib import Path

from iznet import protos_build


def test_generated_code_is_up_to_date(tmp_path):
    fresh = protos_build.build(tmp_path)
    assert fresh, "protoc generated nothing"
    checked_in = Path(protos_build.ROOT) / "iznet" / "v1"
    stale = [f.name for f in fresh if not (checked_in / f.name).exists()
             or (checked_in / f.name).read_bytes() != f.read_bytes()]
    extra = sorted({p.name for p in checked_in.iterdir() if p.name.endswith(protos_build.GENERATED_SUFFIXES)}
                   - {f.name for f in fresh})
    assert not stale and not extra, f"run `make protos`: stale {stale}, no longer generated {extra}"


def test_contracts_cover_the_services_and_batches():
    from iznet.v1 import detection_pb2, embedding_pb2, gallery_pb2, gateway_pb2

    assert {m.name for m in gateway_pb2.DESCRIPTOR.services_by_name["Gateway"].methods} >= {"Label", "LabelMany"}
    assert gateway_pb2.DESCRIPTOR.services_by_name["Gateway"].methods_by_name["LabelMany"].server_streaming
    for svc, module in [("Detection", detection_pb2), ("Embedding", embedding_pb2), ("Gallery", gallery_pb2)]:
        assert svc in module.DESCRIPTOR.services_by_name
    # Batches: several images or crops per call, and answers that name their versions.
    assert detection_pb2.DetectRequest.DESCRIPTOR.fields_by_name["images"].is_repeated
    assert embedding_pb2.EmbedRequest.DESCRIPTOR.fields_by_name["crops"].is_repeated
    assert gallery_pb2.SearchRequest.DESCRIPTOR.fields_by_name["vectors"].is_repeated
    resp = gateway_pb2.LabelResponse.DESCRIPTOR.fields_by_name
    assert {"detector", "embedder", "gallery", "timings"} <= set(resp)
