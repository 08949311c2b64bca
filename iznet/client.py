"""A small typed client for the IZ*Net gateway (``iznet.v1.Gateway``).

    from iznet.client import GatewayClient
    with GatewayClient("127.0.0.1:50051", api_key=None) as gw:
        result = gw.label("group.jpg", annotate=True)   # an iznet.pipeline.LabelResult, as in-process
        for face in result.faces:
            print(face.name, face.score, face.box)
        result.to_json()                                # the JSON `iznet label` writes, either way
        for r in gw.label_many(["a.jpg", "b.jpg"]):
            ...

Errors come back as :class:`GatewayError` with the gRPC code name (``INVALID_ARGUMENT``, ``NOT_FOUND``,
``FAILED_PRECONDITION``, ``UNAVAILABLE``, ``UNAUTHENTICATED``, ...) and the server's reason.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Iterator, Union

import grpc

from iznet.errors import IZNetError, UserInputError
from iznet.pipeline import DEFAULT_MIN_FACE, LabelOptions, LabelResult
from iznet.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc
from iznet.wire import label_result_from_pb, options_pb

ImageInput = Union[str, os.PathLike, bytes]


class GatewayError(IZNetError):
    """A call the gateway refused or could not answer; ``code`` is the gRPC status code's name."""

    def __init__(self, code: str, details: str):
        super().__init__(f"{code}: {details}")
        self.code, self.details = code, details
        self.grpc_code = code


def result_from_pb(r: gateway_pb2.LabelResponse) -> LabelResult:
    """The gateway's answer as the in-process pipeline's own :class:`~iznet.pipeline.LabelResult`."""
    return label_result_from_pb(r)


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
    def options(gallery: str = "", annotate: bool = False, min_score: float = 0.0, threshold: float | None = None,
                return_crops: bool = False, min_face: int = DEFAULT_MIN_FACE) -> gateway_pb2.LabelOptions:
        """The same :class:`~iznet.pipeline.LabelOptions` the in-process pipeline takes (checked here)."""
        opts = LabelOptions(min_face=min_face, min_score=min_score, threshold=threshold or None,
                            return_crops=return_crops)
        return options_pb(opts, gallery=gallery, annotate=annotate)

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
