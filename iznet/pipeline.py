"""The one core pipeline: a photo in; every face boxed, aligned, embedded, looked up and named.

``Pipeline(detector, embedder, gallery)`` is what the CLI runs now and what the services will serve
unchanged: the gateway's ``Label`` maps :class:`LabelResult` onto ``iznet.v1.LabelResponse`` field by field
(box, landmarks, identity with name/unknown/score/distance/threshold, the detector, embedder and gallery
versions, per-stage timings). Enrollment goes through the same detection and alignment, so gallery crops
look exactly like the crops labelling compares them with, and like the dataset builder's training crops
(the same :func:`iznet.data.align.align_face` with the same size and margin).
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from iznet.data.align import DEFAULT_MARGIN, DEFAULT_SIZE, ChipSpec, choose_face, face_chip
from iznet.detection.find import detect_faces
from iznet.detection.types import Detector, FaceBox
from iznet.errors import IZNetError, NotFoundError, UserInputError
from iznet.gallery.gallery import UNKNOWN, Gallery, GalleryStore, Match
from iznet.sizes import EMBEDDING_DIM
from iznet.imageio import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, decode_image, read_image

#: Faces smaller than this (pixels across) are reported but not recognised: too few pixels to tell anyone.
DEFAULT_MIN_FACE = 20


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 2)


def detector_version(detector: Detector) -> dict[str, str]:
    v = getattr(detector, "version", None)
    if isinstance(v, dict):
        return {**{k: str(x) for k, x in v.items()}, "kind": "detector"}
    return {"name": str(getattr(detector, "name", type(detector).__name__)), "version": "teacher", "digest": "",
            "kind": "detector"}


@dataclass
class FaceResult:
    box: FaceBox
    #: The points used to level the eyes (the detector's landmarks, or eyes found in the box), or None.
    landmarks: np.ndarray | None
    #: How the crop was aligned: "landmarks", "eyes" or "box".
    aligned: str
    identity: Match
    crop: np.ndarray | None = None
    #: Why a face was not recognised although found (e.g. too small), or other remarks.
    note: str = ""

    @property
    def name(self) -> str:
        return self.identity.name

    def to_json(self) -> dict[str, Any]:
        out = {"box": self.box.as_list(), "detection_score": round(float(self.box.score), 4),
               "landmarks": None if self.landmarks is None else [[round(float(x), 1), round(float(y), 1)]
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
    detector: dict[str, str]
    embedder: dict[str, str]
    gallery: dict[str, Any]
    timings: dict[str, float]
    #: True when the faces were found only after padding the photo (it is itself a tight face crop).
    padded: bool = False
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"image_id": self.image_id, "width": self.width, "height": self.height,
                "faces": [f.to_json() for f in self.faces], "detector": self.detector, "embedder": self.embedder,
                "gallery": self.gallery, "timings_ms": self.timings, "padded": self.padded,
                **({"error": self.error} if self.error else {})}


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
                   **kwargs: Any) -> "Pipeline":
        """Load gallery ``gallery`` (current version unless ``version``), the model it was built with (or
        ``model``, which must be the same one) and the detector it was enrolled with (or ``detector``)."""
        from iznet.registry import create_detector, create_embedder

        g = GalleryStore(store).load(gallery, version)
        emb = create_embedder(model or g.model.get("spec") or g.model.get("name"), store=store)
        det = detector if detector is not None and not isinstance(detector, str) else \
            create_detector(detector or g.detector, store=store)
        return cls(det, emb, g, **kwargs)

    # ---------------------------------------------------------------------------------------- the stages

    def detect(self, image: np.ndarray) -> tuple[list[FaceBox], bool]:
        faces, padded = detect_faces(self.detector, image, 1, clip=False)
        faces = [f for f in faces if f.score >= self.min_score]
        return faces, padded

    def align_one(self, image: np.ndarray, face: FaceBox) -> tuple[np.ndarray, np.ndarray | None, str]:
        """The crop the embedder wants (its chip), the landmarks that placed it, and how it was aligned."""
        return face_chip(image, face, self.chip, find_eyes_in_box=self.align)

    def _embed(self, crops: list[np.ndarray]) -> np.ndarray:
        if not crops:
            return np.zeros((0, EMBEDDING_DIM), np.float32)
        return np.asarray(self.embedder.embed(crops), dtype=np.float32)

    def versions(self) -> dict[str, Any]:
        return {"detector": detector_version(self.detector), "embedder": dict(self.embedder.version),
                "gallery": self.gallery.version_info() if self.gallery is not None else {}}

    # -------------------------------------------------------------------------------------------- label

    def label(self, photo: bytes | np.ndarray | str | os.PathLike[str], image_id: str = "",
              return_crops: bool = False) -> LabelResult:
        """Every face in ``photo``: box, landmarks, name or ``unknown``, score, distance, threshold.

        Raises :class:`~iznet.errors.ImageError` for a photo that cannot be used (corrupt, empty, too large).
        A photo without faces is an answer with no faces, not an error.
        """
        t_all = time.perf_counter()
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        image = _as_image(photo, self.max_pixels, self.max_bytes)
        timings["decode"] = _ms(t0)
        if not image_id and isinstance(photo, (str, os.PathLike)):
            image_id = str(photo)
        t0 = time.perf_counter()
        faces, padded = self.detect(image)
        timings["detect"] = _ms(t0)
        t0 = time.perf_counter()
        aligned = [self.align_one(image, f) for f in faces]
        timings["align"] = _ms(t0)
        usable = [i for i, f in enumerate(faces) if min(f.width, f.height) >= self.min_face]
        t0 = time.perf_counter()
        vecs = self._embed([aligned[i][0] for i in usable])
        timings["embed"] = _ms(t0)
        t0 = time.perf_counter()
        if self.gallery is not None and len(usable):
            matches = self.gallery.search(vecs, model=self.embedder.version, threshold=self.threshold)
        else:
            thr = float(self.threshold or (self.gallery.threshold_value if self.gallery and self.gallery.exemplars else 1.0))
            matches = [Match(UNKNOWN, True, -1.0, 2.0, thr) for _ in usable]
        timings["search"] = _ms(t0)
        by_face = dict(zip(usable, matches))
        results = []
        for i, (f, (crop, lm, how)) in enumerate(zip(faces, aligned)):
            note = ""
            m = by_face.get(i)
            if m is None:
                thr = float(self.threshold or (self.gallery.threshold_value if self.gallery and self.gallery.exemplars else 1.0))
                m = Match(UNKNOWN, True, -1.0, 2.0, thr)
                note = (f"too small to recognise ({min(f.width, f.height):.0f}px < {self.min_face}px)")
            elif self.gallery is None:
                note = "no gallery: nobody to name"
            results.append(FaceResult(f, lm, how, m, crop if return_crops else None, note))
        # Reading order: left to right, then top to bottom.
        results.sort(key=lambda r: (r.box.x1, r.box.y1))
        timings["total"] = _ms(t_all)
        v = self.versions()
        return LabelResult(image_id, int(image.shape[1]), int(image.shape[0]), results, v["detector"],
                           v["embedder"], v["gallery"], timings, padded)

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
