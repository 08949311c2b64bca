from iznet.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SearchRequest(_message.Message):
    __slots__ = ("gallery", "vectors", "top_k", "model_digest", "threshold")
    GALLERY_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    MODEL_DIGEST_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    gallery: str
    vectors: _containers.RepeatedCompositeFieldContainer[_common_pb2.Vector]
    top_k: int
    model_digest: str
    threshold: float
    def __init__(self, gallery: _Optional[str] = ..., vectors: _Optional[_Iterable[_Union[_common_pb2.Vector, _Mapping]]] = ..., top_k: _Optional[int] = ..., model_digest: _Optional[str] = ..., threshold: _Optional[float] = ...) -> None: ...

class Match(_message.Message):
    __slots__ = ("identity", "candidates")
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    identity: _common_pb2.Identity
    candidates: _containers.RepeatedCompositeFieldContainer[_common_pb2.Identity]
    def __init__(self, identity: _Optional[_Union[_common_pb2.Identity, _Mapping]] = ..., candidates: _Optional[_Iterable[_Union[_common_pb2.Identity, _Mapping]]] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("matches", "version", "timings")
    MATCHES_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    matches: _containers.RepeatedCompositeFieldContainer[Match]
    version: _common_pb2.GalleryVersion
    timings: _common_pb2.Timings
    def __init__(self, matches: _Optional[_Iterable[_Union[Match, _Mapping]]] = ..., version: _Optional[_Union[_common_pb2.GalleryVersion, _Mapping]] = ..., timings: _Optional[_Union[_common_pb2.Timings, _Mapping]] = ...) -> None: ...

class Exemplar(_message.Message):
    __slots__ = ("crop", "vector", "source")
    CROP_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    crop: bytes
    vector: _common_pb2.Vector
    source: str
    def __init__(self, crop: _Optional[bytes] = ..., vector: _Optional[_Union[_common_pb2.Vector, _Mapping]] = ..., source: _Optional[str] = ...) -> None: ...

class EnrollRequest(_message.Message):
    __slots__ = ("gallery", "person", "exemplars", "model_digest")
    GALLERY_FIELD_NUMBER: _ClassVar[int]
    PERSON_FIELD_NUMBER: _ClassVar[int]
    EXEMPLARS_FIELD_NUMBER: _ClassVar[int]
    MODEL_DIGEST_FIELD_NUMBER: _ClassVar[int]
    gallery: str
    person: str
    exemplars: _containers.RepeatedCompositeFieldContainer[Exemplar]
    model_digest: str
    def __init__(self, gallery: _Optional[str] = ..., person: _Optional[str] = ..., exemplars: _Optional[_Iterable[_Union[Exemplar, _Mapping]]] = ..., model_digest: _Optional[str] = ...) -> None: ...

class EnrollResponse(_message.Message):
    __slots__ = ("person", "added", "rejected", "version")
    PERSON_FIELD_NUMBER: _ClassVar[int]
    ADDED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    person: Person
    added: int
    rejected: _containers.RepeatedScalarFieldContainer[str]
    version: _common_pb2.GalleryVersion
    def __init__(self, person: _Optional[_Union[Person, _Mapping]] = ..., added: _Optional[int] = ..., rejected: _Optional[_Iterable[str]] = ..., version: _Optional[_Union[_common_pb2.GalleryVersion, _Mapping]] = ...) -> None: ...

class Person(_message.Message):
    __slots__ = ("id", "name", "exemplars")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    EXEMPLARS_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    exemplars: int
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., exemplars: _Optional[int] = ...) -> None: ...

class RenamePersonRequest(_message.Message):
    __slots__ = ("gallery", "person", "new_name")
    GALLERY_FIELD_NUMBER: _ClassVar[int]
    PERSON_FIELD_NUMBER: _ClassVar[int]
    NEW_NAME_FIELD_NUMBER: _ClassVar[int]
    gallery: str
    person: str
    new_name: str
    def __init__(self, gallery: _Optional[str] = ..., person: _Optional[str] = ..., new_name: _Optional[str] = ...) -> None: ...

class RemovePersonRequest(_message.Message):
    __slots__ = ("gallery", "person")
    GALLERY_FIELD_NUMBER: _ClassVar[int]
    PERSON_FIELD_NUMBER: _ClassVar[int]
    gallery: str
    person: str
    def __init__(self, gallery: _Optional[str] = ..., person: _Optional[str] = ...) -> None: ...

class RemovePersonResponse(_message.Message):
    __slots__ = ("removed_exemplars", "version")
    REMOVED_EXEMPLARS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    removed_exemplars: int
    version: _common_pb2.GalleryVersion
    def __init__(self, removed_exemplars: _Optional[int] = ..., version: _Optional[_Union[_common_pb2.GalleryVersion, _Mapping]] = ...) -> None: ...

class ListPeopleRequest(_message.Message):
    __slots__ = ("gallery",)
    GALLERY_FIELD_NUMBER: _ClassVar[int]
    gallery: str
    def __init__(self, gallery: _Optional[str] = ...) -> None: ...

class ListPeopleResponse(_message.Message):
    __slots__ = ("people", "version")
    PEOPLE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    people: _containers.RepeatedCompositeFieldContainer[Person]
    version: _common_pb2.GalleryVersion
    def __init__(self, people: _Optional[_Iterable[_Union[Person, _Mapping]]] = ..., version: _Optional[_Union[_common_pb2.GalleryVersion, _Mapping]] = ...) -> None: ...

class GetVersionRequest(_message.Message):
    __slots__ = ("gallery",)
    GALLERY_FIELD_NUMBER: _ClassVar[int]
    gallery: str
    def __init__(self, gallery: _Optional[str] = ...) -> None: ...
