"""The one labelling path: a photo in; every face boxed, aligned, embedded, looked up and named.

Labelling is three stages, and every client runs the same ones:

- :func:`locate`: detect the faces and cut each one to the embedder's chip (what the detection service serves);
- :func:`identify`: embed the usable crops and look them up in the gallery (the embedding and gallery services);
- :func:`assemble`: a pure function from those results and the :class:`LabelOptions` to one
  :class:`LabelResult` (faces too small to recognise, unknowns and their threshold, notes, reading order,
  the versions that answered).

:class:`Pipeline` runs the three in-process; the gateway runs ``locate`` and ``identify`` behind the services
and calls the same ``assemble``; :mod:`iznet.wire` carries a ``LabelResult`` over gRPC and back, so
``iznet label`` and ``iznet label --server`` write the same JSON. Enrollment goes through the same detection
and alignment, so gallery crops look exactly like the crops labelling compares them with.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from iznet.data.align import DEFAULT_MARGIN, DEFAULT_SIZE, ChipSpec, choose_face, face_chip
from iznet.detection.find import detect_faces
from iznet.detection.types import Detector, FaceBox
from iznet.errors import IZNetError, NotFoundError, UserInputError
from iznet.gallery.gallery import UNKNOWN, Gallery, GalleryStore, Match
from iznet.imageio import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, decode_image, read_image
from iznet.sizes import EMBEDDING_DIM

#: Faces smaller than this (pixels across) are reported but not recognised: too few pixels to tell anyone.
DEFAULT_MIN_FACE = 20


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 2)


class Record(dict):
    """A version record (a model's or a gallery's): a dict, as the JSON has it, whose fields also read as
    attributes (``result.embedder.digest``)."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None


def model_version(version: dict | None, kind: str, chip: Any = "") -> Record:
    """The one shape of a model's version everywhere: name, version, digest, kind, chip."""
    v = dict(version or {})
    return Record(name=str(v.get("name", "")), version=str(v.get("version", "")), digest=str(v.get("digest", "")),
                  kind=str(v.get("kind") or kind), chip=str(v.get("chip") or chip or ""))


def gallery_version(info: dict | None) -> Record:
    """The one shape of a gallery's version: name, version, model, people, exemplars, threshold."""
    if not info:
        return Record()
    return Record(name=str(info.get("name", "")), version=int(info.get("version") or 0),
                  model=model_version(info.get("model"), "embedder"), people=int(info.get("people") or 0),
                  exemplars=int(info.get("exemplars") or 0), threshold=float(info.get("threshold") or 0.0))


def detector_version(detector: Detector) -> Record:
    v = getattr(detector, "version", None)
    if isinstance(v, dict):
        return model_version(v, "detector")
    return model_version({"name": str(getattr(detector, "name", type(detector).__name__)), "version": "unknown"},
                         "detector")


def embedder_version(embedder) -> Record:
    return model_version(getattr(embedder, "version", None), "embedder", getattr(embedder, "chip", ""))


# ---------------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class LabelOptions:
    """Everything a caller may set for one Label answer: the same for the CLI, the gateway and the client."""

    #: Faces smaller than this (pixels across) are reported but not recognised.
    min_face: int = DEFAULT_MIN_FACE
    #: Detections below this detector score are dropped.
    min_score: float = 0.0
    #: The unknown threshold (similarity); None: the gallery's calibrated one.
    threshold: float | None = None
    #: Keep each face's aligned crop in the answer.
    return_crops: bool = False

    def __post_init__(self) -> None:
        if int(self.min_face) < 1:
            raise UserInputError(f"min_face must be at least 1 pixel, not {self.min_face}")
        if not math.isfinite(float(self.min_score)):
            raise UserInputError(f"min_score must be a number, not {self.min_score}")
        if self.threshold is not None and not (math.isfinite(float(self.threshold))
                                               and 0.0 <= float(self.threshold) <= 1.0):
            raise UserInputError(f"threshold must be a similarity in [0, 1], not {self.threshold}")


@dataclass
class FaceResult:
    box: FaceBox
    #: The points that placed the crop (the detector's landmarks, dlib's eyes, the eyes found), or None.
    landmarks: np.ndarray | None
    #: How the crop was aligned: "landmarks", "shape-predictor", "eyes" or "box".
    aligned: str
    identity: Match
    #: The aligned crop when asked for (an array in-process, encoded bytes from the gateway).
    crop: np.ndarray | bytes | None = None
    #: Why a face was not recognised although found (e.g. too small), or other remarks.
    note: str = ""

    @property
    def name(self) -> str:
        return self.identity.name

    @property
    def unknown(self) -> bool:
        return self.identity.unknown

    @property
    def score(self) -> float:
        return self.identity.score

    @property
    def threshold(self) -> float:
        return self.identity.threshold

    def to_json(self) -> dict[str, Any]:
        # float32 first: the precision every number crosses gRPC with, so both paths write the same JSON.
        f32 = lambda v: float(np.float32(v))  # noqa: E731
        out = {"box": self.box.as_list(), "detection_score": round(f32(self.box.score), 4),
               "landmarks": None if self.landmarks is None else [[round(f32(x), 1), round(f32(y), 1)]
                                                                 for x, y in self.landmarks],
               "aligned": self.aligned, **self.identity.to_json()}
        if self.note:
            out["note"] = self.note
        return out


@dataclass
class LabelResult:
    image_id: str
    width: int
    height: int
    faces: list[FaceResult]
    detector: Record
    embedder: Record
    gallery: Record
    timings: dict[str, float]
    #: True when the faces were found only after padding the photo (it is itself a tight face crop).
    padded: bool = False
    error: str = ""
    #: The annotated photo (JPEG) when the gateway was asked for it; not part of the JSON.
    annotated: bytes = b""
    #: Through the gateway: crops in the embedding call that carried these faces (photos share calls).
    embedding_batch: int = 0

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.faces]

    @property
    def timings_ms(self) -> dict[str, float]:
        return self.timings

    def to_json(self) -> dict[str, Any]:
        """The answer as `iznet label` writes it beside the annotated photo (in-process or ``--server``)."""
        return {"image_id": self.image_id, "width": self.width, "height": self.height,
                "faces": [f.to_json() for f in self.faces], "detector": dict(self.detector),
                "embedder": dict(self.embedder),
                "gallery": {**self.gallery, **({"model": dict(self.gallery["model"])} if "model" in self.gallery
                                               else {})},
                "timings_ms": self.timings, "padded": self.padded, **({"error": self.error} if self.error else {})}


# ----------------------------------------------------------------------------------------------- stages


@dataclass
class LocatedFace:
    """One face :func:`locate` found: the detector's box, the crop cut for the embedder, how it was cut."""

    box: FaceBox
    crop: np.ndarray | bytes | None
    #: The points that placed the crop, or None.
    landmarks: np.ndarray | None
    aligned: str


def locate(detector: Detector, image: np.ndarray, chip: ChipSpec, *, min_score: float = 0.0,
           find_eyes: bool = True) -> tuple[list[LocatedFace], bool]:
    """Detect + align: every face at or above ``min_score`` cut to ``chip``, and whether the faces were found
    only after padding the photo. The detection service serves exactly this."""
    faces, padded = detect_faces(detector, image, 1, clip=False)
    faces = [f for f in faces if f.score >= min_score]
    return [LocatedFace(f, *face_chip(image, f, chip, find_eyes_in_box=find_eyes)) for f in faces], padded


def usable_faces(located: Sequence[LocatedFace], min_face: int) -> list[int]:
    """The faces big enough to recognise (their indices): the ones to embed and look up."""
    return [i for i, f in enumerate(located) if min(f.box.width, f.box.height) >= min_face]


def identify(embedder, gallery: Gallery | None, crops: list[np.ndarray],
             threshold: float | None = None) -> list[Match]:
    """Embed + search: who each crop is (the embedding and gallery services do this behind the gateway)."""
    if gallery is None or not crops:
        return []
    vecs = np.asarray(embedder.embed(crops), dtype=np.float32)
    return gallery.search(vecs, model=embedder.version, threshold=threshold)


def answer_threshold(options: LabelOptions, gallery: dict | None) -> float:
    """The threshold an answer names for faces that were never looked up (the one a lookup would use)."""
    if options.threshold is not None:
        return float(options.threshold)
    if gallery and gallery.get("exemplars"):
        return float(gallery.get("threshold") or 1.0)
    return 1.0


def assemble(image_id: str, width: int, height: int, located: Sequence[LocatedFace], matches: dict[int, Match],
             options: LabelOptions, *, detector: dict, embedder: dict, gallery: dict | None,
             timings: dict[str, float] | None = None, padded: bool = False) -> LabelResult:
    """One answer from what the stages found: a pure function, the same in-process and in the gateway.

    ``matches`` maps the index of each looked-up face (see :func:`usable_faces`) to who it is; every other
    face is ``unknown`` with the reason in its note. Faces come in reading order (left to right, then top to
    bottom), and the answer names the detector, embedder and gallery versions that produced it."""
    thr = answer_threshold(options, gallery)
    results = []
    for i, f in enumerate(located):
        note = ""
        m = matches.get(i)
        if m is None:
            m = Match(UNKNOWN, True, -1.0, 2.0, thr)
            if min(f.box.width, f.box.height) < options.min_face:
                note = f"too small to recognise ({min(f.box.width, f.box.height):.0f}px < {options.min_face}px)"
            elif not gallery:
                note = "no gallery: nobody to name"
        results.append(FaceResult(f.box, f.landmarks, f.aligned, m, f.crop if options.return_crops else None,
                                  note))
    results.sort(key=lambda r: (r.box.x1, r.box.y1))
    return LabelResult(image_id, int(width), int(height), results, model_version(detector, "detector"),
                       model_version(embedder, "embedder"), gallery_version(gallery), dict(timings or {}), padded)


@dataclass
class EnrollOutcome:
    source: str
    person: str
    status: str  # "enrolled" or "rejected"
    reason: str = ""  # why rejected: unreadable, no_face, face_too_small, duplicate
    detail: str = ""
    note: str = ""  # remarks on an enrolled photo (several faces, found after padding, ...)
    exemplar_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in ("", None)}


@dataclass
class EnrollReport:
    outcomes: list[EnrollOutcome] = field(default_factory=list)

    @property
    def enrolled(self) -> list[EnrollOutcome]:
        return [o for o in self.outcomes if o.status == "enrolled"]

    @property
    def rejected(self) -> list[EnrollOutcome]:
        return [o for o in self.outcomes if o.status == "rejected"]

    def by_person(self) -> dict[str, tuple[int, int]]:
        out: dict[str, tuple[int, int]] = {}
        for o in self.outcomes:
            a, r = out.get(o.person, (0, 0))
            out[o.person] = (a + (o.status == "enrolled"), r + (o.status == "rejected"))
        return out


def _as_image(photo: bytes | np.ndarray | str | os.PathLike[str], max_pixels: int, max_bytes: int) -> np.ndarray:
    if isinstance(photo, np.ndarray):
        if photo.ndim == 2:
            photo = np.repeat(photo[:, :, None], 3, axis=2)
        if photo.ndim != 3 or photo.shape[2] != 3 or photo.dtype != np.uint8 or min(photo.shape[:2]) < 1:
            raise UserInputError(f"an image array must be BGR uint8 (H, W, 3), not {photo.dtype} {photo.shape}")
        if photo.shape[0] * photo.shape[1] > max_pixels:
            raise UserInputError(f"image too large: {photo.shape[1]}x{photo.shape[0]} pixels > limit {max_pixels:,}")
        return photo
    if isinstance(photo, (bytes, bytearray, memoryview)):
        return decode_image(bytes(photo), max_pixels=max_pixels, max_bytes=max_bytes)
    return read_image(photo, max_pixels=max_pixels, max_bytes=max_bytes)


class Pipeline:
    """Detector + embedder + gallery. Thread-compatible for reads (label); enrollment edits the gallery."""

    def __init__(self, detector: Detector, embedder, gallery: Gallery | None = None, *, size: int = DEFAULT_SIZE,
                 margin: float = DEFAULT_MARGIN, align: bool = True, min_face: int = DEFAULT_MIN_FACE,
                 min_score: float = 0.0, threshold: float | None = None, max_pixels: int = DEFAULT_MAX_PIXELS,
                 max_bytes: int = DEFAULT_MAX_BYTES, chip: "ChipSpec | str | None" = None):
        self.detector = detector
        self.embedder = embedder
        self.gallery = gallery
        if gallery is not None:
            gallery.check_model(embedder.version)
        self.size, self.margin, self.align = size, margin, align
        #: The face crop to cut: the embedder's own (dlib's chip for dlib's ResNet), else a box crop.
        self.chip = ChipSpec.parse(chip) if chip is not None else (
            getattr(embedder, "chip", None) or ChipSpec("box", size, margin))
        self.min_face, self.min_score = min_face, min_score
        self.threshold = threshold
        self.max_pixels, self.max_bytes = max_pixels, max_bytes

    # ------------------------------------------------------------------------------------------ building

    @classmethod
    def from_store(cls, store: str | os.PathLike[str], gallery: str, model: str | None = None,
                   detector: str | Detector | None = None, version: int | None = None,
                   threads: int | None = None, **kwargs: Any) -> "Pipeline":
        """Load gallery ``gallery`` (current version unless ``version``), the model it was built with (or
        ``model``, which must be the same one) and the detector it was enrolled with (or ``detector``).
        ``threads``: the models' intra-op threads (None: their engines' defaults)."""
        from iznet.registry import create_detector, create_embedder, detector_threads

        g = GalleryStore(store).load(gallery, version)
        emb = create_embedder(model or g.model.get("spec") or g.model.get("name"), store=store, threads=threads)
        spec = detector or g.detector
        det = detector if detector is not None and not isinstance(detector, str) else \
            create_detector(spec, store=store, **detector_threads(spec, threads))
        return cls(det, emb, g, **kwargs)

    # ---------------------------------------------------------------------------------------- the stages

    def options(self, **overrides: Any) -> LabelOptions:
        """This pipeline's :class:`LabelOptions`, with ``overrides``."""
        base = {"min_face": self.min_face, "min_score": self.min_score, "threshold": self.threshold}
        return LabelOptions(**{**base, **overrides})

    def align_one(self, image: np.ndarray, face: FaceBox) -> tuple[np.ndarray, np.ndarray | None, str]:
        """The crop the embedder wants (its chip), the landmarks that placed it, and how it was aligned."""
        return face_chip(image, face, self.chip, find_eyes_in_box=self.align)

    def _embed(self, crops: list[np.ndarray]) -> np.ndarray:
        if not crops:
            return np.zeros((0, EMBEDDING_DIM), np.float32)
        return np.asarray(self.embedder.embed(crops), dtype=np.float32)

    def versions(self) -> dict[str, Record]:
        return {"detector": detector_version(self.detector), "embedder": embedder_version(self.embedder),
                "gallery": gallery_version(self.gallery.version_info() if self.gallery is not None else None)}

    # -------------------------------------------------------------------------------------------- label

    def label(self, photo: bytes | np.ndarray | str | os.PathLike[str], image_id: str = "",
              return_crops: bool = False, options: LabelOptions | None = None) -> LabelResult:
        """Every face in ``photo``: box, landmarks, name or ``unknown``, score, distance, threshold.

        Raises :class:`~iznet.errors.ImageError` for a photo that cannot be used (corrupt, empty, too large).
        A photo without faces is an answer with no faces, not an error.
        """
        opts = options or self.options(return_crops=return_crops)
        t_all = time.perf_counter()
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        image = _as_image(photo, self.max_pixels, self.max_bytes)
        timings["decode"] = _ms(t0)
        if not image_id and isinstance(photo, (str, os.PathLike)):
            image_id = str(photo)
        t0 = time.perf_counter()
        located, padded = locate(self.detector, image, self.chip, min_score=opts.min_score, find_eyes=self.align)
        timings["locate"] = _ms(t0)
        usable = usable_faces(located, opts.min_face)
        t0 = time.perf_counter()
        matches = identify(self.embedder, self.gallery, [located[i].crop for i in usable], opts.threshold)
        timings["identify"] = _ms(t0)
        timings["total"] = _ms(t_all)
        v = self.versions()
        return assemble(image_id, image.shape[1], image.shape[0], located, dict(zip(usable, matches)), opts,
                        detector=v["detector"], embedder=v["embedder"], gallery=v["gallery"] or None,
                        timings=timings, padded=padded)

    # ------------------------------------------------------------------------------------------- enroll

    def enroll_image(self, person: str, photo: bytes | np.ndarray | str | os.PathLike[str],
                     source: str = "") -> EnrollOutcome:
        """Add the person's face in one photo to the gallery (not saved: the caller saves the gallery).

        The photo should show the person; with several faces the largest and most central is taken, and the
        outcome says so. A rejected photo leaves the gallery unchanged and says why.
        """
        if self.gallery is None:
            raise UserInputError("enrollment needs a gallery")
        if not source and isinstance(photo, (str, os.PathLike)):
            source = str(photo)
        try:
            image = _as_image(photo, self.max_pixels, self.max_bytes)
        except IZNetError as exc:
            out = EnrollOutcome(source, person, "rejected", "unreadable", str(exc))
            self.gallery.record_source(source, person, "rejected", f"unreadable: {exc}")
            return out
        digest = hashlib.sha1(image.tobytes()).hexdigest()[:16]
        if self.gallery.has_person(person):
            pid = self.gallery.person(person).id
            if any(s.get("person_id") == pid and s.get("status") == "enrolled" and s.get("sha1") == digest
                   for s in self.gallery.sources):
                out = EnrollOutcome(source, person, "rejected", "duplicate",
                                    "the same picture is already enrolled for this person")
                self.gallery.record_source(source, person, "rejected", "duplicate")
                return out
        faces, padded = detect_faces(self.detector, image, self.min_face, clip=False)
        faces = [f for f in faces if f.score >= self.min_score]
        if not faces:
            small, _ = detect_faces(self.detector, image, 1)
            reason, detail = (("face_too_small", f"only faces smaller than {self.min_face}px were found")
                              if small else ("no_face", f"the {getattr(self.detector, 'name', 'detector')} "
                                                        f"detector found no face"))
            self.gallery.record_source(source, person, "rejected", f"{reason}: {detail}")
            return EnrollOutcome(source, person, "rejected", reason, detail)
        h, w = image.shape[:2]
        choice = choose_face(faces, w, h)
        face = faces[choice.index]
        notes = []
        if len(faces) > 1:
            notes.append(f"several faces ({len(faces)}): took the {choice.reason.replace(f' of {len(faces)}', '')}"
                         + (" (ambiguous: another face was nearly as large and central)" if choice.ambiguous else ""))
        if padded:
            notes.append("face found only after padding the photo (a tight crop)")
        crop, _lm, how = self.align_one(image, face)
        notes.append(f"aligned by {how}")
        vec = self._embed([crop])
        note = "; ".join(notes)
        (eid,) = self.gallery.add_exemplars(person, vec, [crop], [source], [note], model=self.embedder.version)
        # The pixels' digest is recorded so the same picture is not enrolled twice for this person.
        self.gallery.record_source(source, person, "enrolled", "", eid, sha1=digest)
        return EnrollOutcome(source, person, "enrolled", note=note, exemplar_id=eid)

    def enroll_folder(self, root: str | os.PathLike[str], people: Iterable[str] | None = None,
                      progress: bool = False) -> EnrollReport:
        """Enroll ``root/<person>/<photo>`` (one sub-folder per person); per-photo success or a reason."""
        root = Path(root)
        if not root.is_dir():
            raise NotFoundError(f"{root}: no such folder (expected one sub-folder of photos per person)")
        tasks = []
        wanted = set(people) if people else None
        for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if wanted is not None and folder.name not in wanted:
                continue
            for f in sorted(folder.rglob("*")):
                if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in IMAGE_SUFFIXES:
                    tasks.append((folder.name, f))
        if not tasks:
            raise UserInputError(f"{root}: no photos found (expected {root}/<person>/<photo>.jpg|png|pgm)")
        report = EnrollReport()
        it: Iterable = tasks
        if progress:
            from tqdm import tqdm

            it = tqdm(tasks, desc="enrolling", unit="photo")
        for person, f in it:
            report.outcomes.append(self.enroll_image(person, f, str(f)))
        return report
