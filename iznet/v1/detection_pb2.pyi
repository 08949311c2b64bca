from iznet.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DetectRequest(_message.Message):
    __slots__ = ("images", "min_score", "crop_size", "max_faces", "chip", "raw_crops")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    MIN_SCORE_FIELD_NUMBER: _ClassVar[int]
    CROP_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_FACES_FIELD_NUMBER: _ClassVar[int]
    CHIP_FIELD_NUMBER: _ClassVar[int]
    RAW_CROPS_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[_common_pb2.Image]
    min_score: float
    crop_size: int
    max_faces: int
    chip: str
    raw_crops: bool
    def __init__(self, images: _Optional[_Iterable[_Union[_common_pb2.Image, _Mapping]]] = ..., min_score: _Optional[float] = ..., crop_size: _Optional[int] = ..., max_faces: _Optional[int] = ..., chip: _Optional[str] = ..., raw_crops: _Optional[bool] = ...) -> None: ...

class ImageDetections(_message.Message):
    __slots__ = ("image_id", "width", "height", "faces", "error", "padded")
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    FACES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    PADDED_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    width: int
    height: int
    faces: _containers.RepeatedCompositeFieldContainer[_common_pb2.Face]
    error: str
    padded: bool
    def __init__(self, image_id: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., faces: _Optional[_Iterable[_Union[_common_pb2.Face, _Mapping]]] = ..., error: _Optional[str] = ..., padded: _Optional[bool] = ...) -> None: ...

class DetectResponse(_message.Message):
    __slots__ = ("results", "model", "timings")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ImageDetections]
    model: _common_pb2.ModelVersion
    timings: _common_pb2.Timings
    def __init__(self, results: _Optional[_Iterable[_Union[ImageDetections, _Mapping]]] = ..., model: _Optional[_Union[_common_pb2.ModelVersion, _Mapping]] = ..., timings: _Optional[_Union[_common_pb2.Timings, _Mapping]] = ...) -> None: ...
