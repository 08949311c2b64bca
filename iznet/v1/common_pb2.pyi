from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Image(_message.Message):
    __slots__ = ("data", "id", "pixels")
    DATA_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    PIXELS_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    id: str
    pixels: Pixels
    def __init__(self, data: _Optional[bytes] = ..., id: _Optional[str] = ..., pixels: _Optional[_Union[Pixels, _Mapping]] = ...) -> None: ...

class Pixels(_message.Message):
    __slots__ = ("width", "height", "bgr")
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    BGR_FIELD_NUMBER: _ClassVar[int]
    width: int
    height: int
    bgr: bytes
    def __init__(self, width: _Optional[int] = ..., height: _Optional[int] = ..., bgr: _Optional[bytes] = ...) -> None: ...

class Box(_message.Message):
    __slots__ = ("x1", "y1", "x2", "y2", "score")
    X1_FIELD_NUMBER: _ClassVar[int]
    Y1_FIELD_NUMBER: _ClassVar[int]
    X2_FIELD_NUMBER: _ClassVar[int]
    Y2_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    x1: float
    y1: float
    x2: float
    y2: float
    score: float
    def __init__(self, x1: _Optional[float] = ..., y1: _Optional[float] = ..., x2: _Optional[float] = ..., y2: _Optional[float] = ..., score: _Optional[float] = ...) -> None: ...

class Point(_message.Message):
    __slots__ = ("x", "y")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    x: float
    y: float
    def __init__(self, x: _Optional[float] = ..., y: _Optional[float] = ...) -> None: ...

class Landmarks(_message.Message):
    __slots__ = ("points",)
    POINTS_FIELD_NUMBER: _ClassVar[int]
    points: _containers.RepeatedCompositeFieldContainer[Point]
    def __init__(self, points: _Optional[_Iterable[_Union[Point, _Mapping]]] = ...) -> None: ...

class ModelVersion(_message.Message):
    __slots__ = ("name", "version", "digest", "kind", "chip")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CHIP_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    digest: str
    kind: str
    chip: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., digest: _Optional[str] = ..., kind: _Optional[str] = ..., chip: _Optional[str] = ...) -> None: ...

class GalleryVersion(_message.Message):
    __slots__ = ("name", "version", "model", "people", "exemplars", "threshold")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PEOPLE_FIELD_NUMBER: _ClassVar[int]
    EXEMPLARS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    model: ModelVersion
    people: int
    exemplars: int
    threshold: float
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., model: _Optional[_Union[ModelVersion, _Mapping]] = ..., people: _Optional[int] = ..., exemplars: _Optional[int] = ..., threshold: _Optional[float] = ...) -> None: ...

class Timings(_message.Message):
    __slots__ = ("ms",)
    class MsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    MS_FIELD_NUMBER: _ClassVar[int]
    ms: _containers.ScalarMap[str, float]
    def __init__(self, ms: _Optional[_Mapping[str, float]] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Vector(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class Identity(_message.Message):
    __slots__ = ("name", "unknown", "score", "distance", "threshold", "person_id", "nearest", "rule")
    NAME_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    NEAREST_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    name: str
    unknown: bool
    score: float
    distance: float
    threshold: float
    person_id: str
    nearest: str
    rule: str
    def __init__(self, name: _Optional[str] = ..., unknown: _Optional[bool] = ..., score: _Optional[float] = ..., distance: _Optional[float] = ..., threshold: _Optional[float] = ..., person_id: _Optional[str] = ..., nearest: _Optional[str] = ..., rule: _Optional[str] = ...) -> None: ...

class Face(_message.Message):
    __slots__ = ("box", "landmarks", "identity", "crop", "aligned", "note", "candidates", "crop_pixels")
    BOX_FIELD_NUMBER: _ClassVar[int]
    LANDMARKS_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    CROP_FIELD_NUMBER: _ClassVar[int]
    ALIGNED_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    CROP_PIXELS_FIELD_NUMBER: _ClassVar[int]
    box: Box
    landmarks: Landmarks
    identity: Identity
    crop: bytes
    aligned: str
    note: str
    candidates: _containers.RepeatedCompositeFieldContainer[Identity]
    crop_pixels: Pixels
    def __init__(self, box: _Optional[_Union[Box, _Mapping]] = ..., landmarks: _Optional[_Union[Landmarks, _Mapping]] = ..., identity: _Optional[_Union[Identity, _Mapping]] = ..., crop: _Optional[bytes] = ..., aligned: _Optional[str] = ..., note: _Optional[str] = ..., candidates: _Optional[_Iterable[_Union[Identity, _Mapping]]] = ..., crop_pixels: _Optional[_Union[Pixels, _Mapping]] = ...) -> None: ...
