from iznet.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LabelOptions(_message.Message):
    __slots__ = ("gallery", "annotate", "min_score", "threshold", "return_crops", "min_face")
    GALLERY_FIELD_NUMBER: _ClassVar[int]
    ANNOTATE_FIELD_NUMBER: _ClassVar[int]
    MIN_SCORE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    RETURN_CROPS_FIELD_NUMBER: _ClassVar[int]
    MIN_FACE_FIELD_NUMBER: _ClassVar[int]
    gallery: str
    annotate: bool
    min_score: float
    threshold: float
    return_crops: bool
    min_face: int
    def __init__(self, gallery: _Optional[str] = ..., annotate: _Optional[bool] = ..., min_score: _Optional[float] = ..., threshold: _Optional[float] = ..., return_crops: _Optional[bool] = ..., min_face: _Optional[int] = ...) -> None: ...

class LabelRequest(_message.Message):
    __slots__ = ("image", "options")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    image: _common_pb2.Image
    options: LabelOptions
    def __init__(self, image: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., options: _Optional[_Union[LabelOptions, _Mapping]] = ...) -> None: ...

class LabelManyRequest(_message.Message):
    __slots__ = ("images", "options")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[_common_pb2.Image]
    options: LabelOptions
    def __init__(self, images: _Optional[_Iterable[_Union[_common_pb2.Image, _Mapping]]] = ..., options: _Optional[_Union[LabelOptions, _Mapping]] = ...) -> None: ...

class LabelResponse(_message.Message):
    __slots__ = ("image_id", "width", "height", "faces", "annotated", "detector", "embedder", "gallery", "timings", "error", "padded", "embedding_batch")
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    FACES_FIELD_NUMBER: _ClassVar[int]
    ANNOTATED_FIELD_NUMBER: _ClassVar[int]
    DETECTOR_FIELD_NUMBER: _ClassVar[int]
    EMBEDDER_FIELD_NUMBER: _ClassVar[int]
    GALLERY_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    PADDED_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_BATCH_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    width: int
    height: int
    faces: _containers.RepeatedCompositeFieldContainer[_common_pb2.Face]
    annotated: bytes
    detector: _common_pb2.ModelVersion
    embedder: _common_pb2.ModelVersion
    gallery: _common_pb2.GalleryVersion
    timings: _common_pb2.Timings
    error: str
    padded: bool
    embedding_batch: int
    def __init__(self, image_id: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., faces: _Optional[_Iterable[_Union[_common_pb2.Face, _Mapping]]] = ..., annotated: _Optional[bytes] = ..., detector: _Optional[_Union[_common_pb2.ModelVersion, _Mapping]] = ..., embedder: _Optional[_Union[_common_pb2.ModelVersion, _Mapping]] = ..., gallery: _Optional[_Union[_common_pb2.GalleryVersion, _Mapping]] = ..., timings: _Optional[_Union[_common_pb2.Timings, _Mapping]] = ..., error: _Optional[str] = ..., padded: _Optional[bool] = ..., embedding_batch: _Optional[int] = ...) -> None: ...
