"""A small typed client for the IZ*Net gateway (``iznet.v1.Gateway``).

    from iznet.client import GatewayClient
    with GatewayClient("127.0.0.1:50051", api_key=None) as gw:
        result = gw.label("group.jpg", annotate=True)
        for face in result.faces:
            print(face.name, face.score, face.box)
        for r in gw.label_many(["a.jpg", "b.jpg"]):
            ...

Errors come back as :class:`GatewayError` with the gRPC code name (``INVALID_ARGUMENT``, ``NOT_FOUND``,
``FAILED_PRECONDITION``, ``UNAVAILABLE``, ``UNAUTHENTICATED``, ...) and the server's reason.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Union

import grpc

from iznet.errors import IZNetError, UserInputError
from iznet.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc

ImageInput = Union[str, os.PathLike, bytes]


class GatewayError(IZNetError):
    """A call the gateway refused or could not answer; ``code`` is the gRPC status code's name."""

    def __init__(self, code: str, details: str):
        super().__init__(f"{code}: {details}")
        self.code, self.details = code, details
        self.grpc_code = code


@dataclass(frozen=True)
class Version:
    name: str
    version: str
    digest: str
    kind: str = ""


@dataclass(frozen=True)
class GalleryInfo:
    name: str
    version: int
    model: Version
    people: int
    exemplars: int


@dataclass(frozen=True)
class LabelledFace:
    box: tuple[float, float, float, float]
    detection_score: float
    name: str
    unknown: bool
    score: float
    distance: float
    threshold: float
    crop: bytes = b""


@dataclass(frozen=True)
class LabelResult:
    image_id: str
    width: int
    height: int
    faces: list[LabelledFace]
    annotated: bytes
    detector: Version
    embedder: Version
    gallery: GalleryInfo
    timings_ms: dict[str, float] = field(default_factory=dict)
    error: str = ""

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.faces]

    def to_json(self) -> dict:
        """The answer as the JSON `iznet label --server` writes beside the annotated photo."""
        return {"image_id": self.image_id, "width": self.width, "height": self.height,
                "faces": [{"box": [round(v, 2) for v in f.box], "detection_score": round(f.detection_score, 4),
                           "name": f.name, "unknown": f.unknown, "score": round(f.score, 6),
                           "distance": round(f.distance, 6), "threshold": round(f.threshold, 6)}
                          for f in self.faces],
                "detector": self.detector.__dict__, "embedder": self.embedder.__dict__,
                "gallery": {**self.gallery.__dict__, "model": self.gallery.model.__dict__},
                "timings_ms": self.timings_ms}


def _version(v: common_pb2.ModelVersion) -> Version:
    return Version(v.name, v.version, v.digest, v.kind)


def result_from_pb(r: gateway_pb2.LabelResponse) -> LabelResult:
    faces = [LabelledFace((f.box.x1, f.box.y1, f.box.x2, f.box.y2), f.box.score, f.identity.name or "unknown",
                          f.identity.unknown, f.identity.score, f.identity.distance, f.identity.threshold, f.crop)
             for f in r.faces]
    g = r.gallery
    return LabelResult(r.image_id, r.width, r.height, faces, r.annotated, _version(r.detector), _version(r.embedder),
                       GalleryInfo(g.name, g.version, _version(g.model), g.people, g.exemplars), dict(r.timings.ms),
                       r.error)


def _image(image: ImageInput, image_id: str = "") -> common_pb2.Image:
    if isinstance(image, bytes):
        return common_pb2.Image(data=image, id=image_id)
    path = Path(image)
    try:
        return common_pb2.Image(data=path.read_bytes(), id=image_id or path.name)
    except FileNotFoundError:
        raise UserInputError(f"{path}: no such file") from None
    except OSError as exc:
        raise UserInputError(f"{path}: cannot read: {exc.strerror}") from None


class GatewayClient:
    def __init__(self, target: str, api_key: str | None = None, timeout: float = 60.0, max_message_mb: int = 32):
        self.target, self.timeout = target, timeout
        self.metadata = (("x-api-key", api_key),) if api_key else ()
        self.channel = grpc.insecure_channel(target, options=[
            ("grpc.max_receive_message_length", max_message_mb * 2**20),
            ("grpc.max_send_message_length", max_message_mb * 2**20)])
        self.stub = gateway_pb2_grpc.GatewayStub(self.channel)

    @staticmethod
    def options(gallery: str = "", annotate: bool = False, min_score: float = 0.0, threshold: float = 0.0,
                return_crops: bool = False) -> gateway_pb2.LabelOptions:
        return gateway_pb2.LabelOptions(gallery=gallery, annotate=annotate, min_score=min_score, threshold=threshold,
                                        return_crops=return_crops)

    def label(self, image: ImageInput, *, image_id: str = "", timeout: float | None = None, **options) -> LabelResult:
        """Label one photo (a path or encoded bytes)."""
        request = gateway_pb2.LabelRequest(image=_image(image, image_id), options=self.options(**options))
        try:
            return result_from_pb(self.stub.Label(request, timeout=timeout or self.timeout, metadata=self.metadata))
        except grpc.RpcError as exc:
            raise GatewayError(exc.code().name, exc.details() or "") from None

    def label_many(self, images: Iterable[ImageInput], *, timeout: float | None = None,
                   **options) -> Iterator[LabelResult]:
        """Label several photos; results stream back in order (a photo that failed has ``error`` set)."""
        request = gateway_pb2.LabelManyRequest(images=[_image(i) for i in images], options=self.options(**options))
        try:
            for r in self.stub.LabelMany(request, timeout=timeout or self.timeout, metadata=self.metadata):
                yield result_from_pb(r)
        except grpc.RpcError as exc:
            raise GatewayError(exc.code().name, exc.details() or "") from None

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "GatewayClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
