"""STAND-INS for the embedder (issue 3) and the gallery (issue 5), so the services and the gateway run for real
before those land. They are honest placeholders, not a face recogniser to rely on:

- :class:`StandInEmbedder` ("standin-pixels"): hue-saturation histograms of the upper and lower halves of an
  aligned crop's centre (square-rooted), mapped to 128-d by a fixed seeded random projection and L2-normalised.
  No training. It tells generated people (``iznet.synthetic``, who differ in skin, hair and eye colours) apart
  (0.99 leave-one-out 1-NN on 8 of them); on real photos it is little better than chance.
- :class:`StandInGallery`: exemplar vectors in NumPy (exact nearest neighbour by dot product; FAISS and SQLite
  come with issue 5), bound to the digest of the model that made them, versioned in the artifact store.

Both have the shapes the real pieces have (``embed(crops) -> (N, 128)``, ``input_size``, ``version`` dict;
a gallery ``search(vectors, model_digest=...)``), so swapping them is a change of loader, not of callers:
:func:`load_embedder_dir` is the one seam for models, :func:`open_gallery` the one for galleries.

Artifacts in the store (``iznet.store``)::

    models/<name>/<v>/model.json        {"kind": "embedder", "standin": "pixels", "seed": 1, ...}
    galleries/<name>/<v>/gallery.json   {"name", "model": {name, version, digest, kind}, "threshold", "people"}
    galleries/<name>/<v>/vectors.npy    (M, 128) float32 exemplars;  labels.npy  (M,) index into people
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from iznet.errors import NotFoundError, PreconditionError, UserInputError
from iznet.store import ArtifactStore, atomic_write_json

DIM = 128
#: L2 distance between unit vectors above which a face is "unknown" (calibrated on generated people).
DEFAULT_THRESHOLD = 1.0


class StandInEmbedder:
    """STAND-IN embedder (see the module docstring): fixed random projection of crop thumbnails."""

    input_size = 96
    HUE_BINS, SAT_BINS = 30, 8

    def __init__(self, seed: int = 1, name: str = "standin-pixels", version: str = "1"):
        self.seed = int(seed)
        rng = np.random.default_rng(self.seed)
        self.proj = (rng.standard_normal((2 * self.HUE_BINS * self.SAT_BINS, DIM)) / np.sqrt(DIM)).astype(np.float32)
        digest = hashlib.sha256(b"standin-pixels/1" + self.proj.tobytes()).hexdigest()[:16]
        self.version = {"name": name, "version": str(version), "digest": "sha256:" + digest, "kind": "embedder"}

    def _features(self, crop: np.ndarray) -> np.ndarray:
        if crop.ndim == 2:
            crop = cv2.cvtColor(crop, cv2.COLOR_GRAY2BGR)
        h, w = crop.shape[:2]
        m = int(round(min(h, w) * 0.15))
        inner = crop[m:h - m, m:w - m] if min(h, w) - 2 * m >= 8 else crop
        hsv = cv2.cvtColor(inner, cv2.COLOR_BGR2HSV)
        parts = []
        for half in (hsv[: len(hsv) // 2], hsv[len(hsv) // 2:]):  # upper (hair, eyes) and lower (skin, mouth)
            hist = cv2.calcHist([half], [0, 1], None, [self.HUE_BINS, self.SAT_BINS], [0, 180, 0, 256]).ravel()
            parts.append(np.sqrt(hist / max(hist.sum(), 1.0)))  # Hellinger
        return np.concatenate(parts)

    def embed(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        if len(crops) == 0:
            return np.zeros((0, DIM), np.float32)
        out = np.stack([self._features(np.asarray(c)) for c in crops]).astype(np.float32) @ self.proj
        return (out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def publish_standin_model(store: ArtifactStore, name: str, seed: int = 1) -> int:
    """Publish a stand-in embedder as the next version of ``models/<name>`` (made current); returns it."""
    staged = store.stage("models", name)
    atomic_write_json(staged / "model.json", {"kind": "embedder", "standin": "pixels", "seed": int(seed),
                                             "name": name})
    return store.publish("models", name, staged)


def load_embedder_dir(path: str | Path):
    """THE seam for embedding models: a model version's folder -> an embedder.

    A stand-in card (``"standin"`` in model.json) gives :class:`StandInEmbedder`; anything else goes to the
    trained networks' loader ``iznet.embedding.load_embedder`` (issue 3) once it is installed.
    """
    path = Path(path)
    card_path = path / "model.json"
    if not card_path.is_file():
        raise NotFoundError(f"no model at {path} (needs model.json)")
    try:
        card = json.loads(card_path.read_text())
    except json.JSONDecodeError as exc:
        raise UserInputError(f"{card_path}: not a model card ({exc})") from None
    if "standin" in card:
        return StandInEmbedder(seed=card.get("seed", 1), name=card.get("name", "standin-pixels"),
                               version=path.name)
    try:
        from iznet.embedding import load_embedder  # type: ignore[attr-defined]  # issue 3
    except ImportError:
        raise UserInputError(f"{path}: trained embedders need iznet.embedding (issue 3), not installed here") from None
    return load_embedder(path)


# --------------------------------------------------------------------------------------------------- gallery


@dataclass
class Candidate:
    name: str
    person_id: str
    distance: float
    score: float


@dataclass
class Match:
    """Who a face is: the nearest person, or unknown, and the threshold that decided it."""

    name: str
    person_id: str
    unknown: bool
    distance: float
    score: float
    threshold: float
    candidates: list[Candidate] = field(default_factory=list)


class StandInGallery:
    """STAND-IN gallery version (see the module docstring): immutable once loaded; edits publish a new one."""

    def __init__(self, name: str, version: int, model: dict, threshold: float, people: list[dict],
                 vectors: np.ndarray, labels: np.ndarray):
        self.name, self.version_number, self.model = name, int(version), dict(model)
        self.threshold = float(threshold)
        self.people = list(people)
        self.vectors = np.asarray(vectors, np.float32).reshape(-1, DIM)
        self.labels = np.asarray(labels, np.int64).reshape(-1)

    @property
    def version(self) -> dict:
        return {"name": self.name, "version": self.version_number, "model": self.model,
                "people": len(self.people), "exemplars": int(len(self.vectors))}

    @classmethod
    def load(cls, path: str | Path, name: str | None = None) -> "StandInGallery":
        path = Path(path)
        try:
            meta = json.loads((path / "gallery.json").read_text())
            vectors = np.load(path / "vectors.npy")
            labels = np.load(path / "labels.npy")
        except FileNotFoundError as exc:
            raise NotFoundError(f"no gallery at {path}: {exc.filename} missing") from None
        return cls(name or meta["name"], int(path.name) if path.name.isdigit() else 0, meta["model"],
                   meta["threshold"], meta["people"], vectors, labels)

    def check_model(self, model_digest: str) -> None:
        if model_digest and model_digest != self.model["digest"]:
            raise PreconditionError(
                f"gallery {self.name!r} v{self.version_number} was built with model {self.model['name']} "
                f"({self.model['digest']}), these vectors come from {model_digest}: re-embed the gallery for the "
                "new model or pin the old one")

    def search(self, vectors: np.ndarray, model_digest: str = "", top_k: int = 1,
               threshold: float = 0.0) -> list[Match]:
        """One :class:`Match` per vector: nearest exemplar's person, unknown when farther than the threshold."""
        self.check_model(model_digest)
        vectors = np.asarray(vectors, np.float32).reshape(-1, DIM)
        threshold = float(threshold) if threshold > 0 else self.threshold
        if len(self.vectors) == 0:
            return [Match("unknown", "", True, float("inf"), 0.0, threshold) for _ in vectors]
        sims = vectors @ self.vectors.T  # unit vectors: cosine similarity
        out = []
        for row in sims:
            best: dict[int, float] = {}
            for j in np.argsort(-row):
                p = int(self.labels[j])
                if p not in best:
                    best[p] = float(row[j])
                if len(best) >= max(1, top_k) + 1:
                    break
            ranked = sorted(best.items(), key=lambda kv: -kv[1])
            cands = [Candidate(self.people[p]["name"], self.people[p]["id"],
                               float(np.sqrt(max(0.0, 2 - 2 * s))), s) for p, s in ranked]
            top = cands[0]
            unknown = top.distance > threshold
            out.append(Match("unknown" if unknown else top.name, "" if unknown else top.person_id, unknown,
                             top.distance, top.score, threshold, cands[1:max(1, top_k) + 1]))
        return out

    def with_exemplars(self, person: str, vectors: np.ndarray, model_digest: str) -> tuple["StandInGallery", dict]:
        """A new gallery (not yet saved) with ``vectors`` added to ``person`` (created if new)."""
        self.check_model(model_digest)
        if not person.strip():
            raise UserInputError("a person needs a name")
        vectors = np.asarray(vectors, np.float32).reshape(-1, DIM)
        people = list(self.people)
        idx = next((i for i, p in enumerate(people) if p["name"] == person), None)
        if idx is None:
            people.append({"id": f"p{len(people) + 1:04d}", "name": person})
            idx = len(people) - 1
        g = StandInGallery(self.name, self.version_number, self.model, self.threshold, people,
                           np.concatenate([self.vectors, vectors]),
                           np.concatenate([self.labels, np.full(len(vectors), idx, np.int64)]))
        return g, {**people[idx], "exemplars": int((g.labels == idx).sum())}

    def without_person(self, person: str) -> tuple["StandInGallery", int]:
        idx = next((i for i, p in enumerate(self.people) if person in (p["name"], p["id"])), None)
        if idx is None:
            raise NotFoundError(f"no person {person!r} in gallery {self.name!r}")
        keep = self.labels != idx
        labels = self.labels[keep]
        labels = np.where(labels > idx, labels - 1, labels)
        people = self.people[:idx] + self.people[idx + 1:]
        return (StandInGallery(self.name, self.version_number, self.model, self.threshold, people,
                               self.vectors[keep], labels), int((~keep).sum()))

    def renamed(self, person: str, new_name: str) -> tuple["StandInGallery", dict]:
        idx = next((i for i, p in enumerate(self.people) if person in (p["name"], p["id"])), None)
        if idx is None:
            raise NotFoundError(f"no person {person!r} in gallery {self.name!r}")
        if not new_name.strip():
            raise UserInputError("a person needs a name")
        people = [dict(p) for p in self.people]
        people[idx]["name"] = new_name
        g = StandInGallery(self.name, self.version_number, self.model, self.threshold, people, self.vectors,
                           self.labels)
        return g, {**people[idx], "exemplars": int((self.labels == idx).sum())}

    def list_people(self) -> list[dict]:
        return [{**p, "exemplars": int((self.labels == i).sum())} for i, p in enumerate(self.people)]

    def publish(self, store: ArtifactStore) -> "StandInGallery":
        """Save as the next version in the store and make it current; returns the saved gallery."""
        staged = store.stage("galleries", self.name)
        np.save(staged / "vectors.npy", self.vectors)
        np.save(staged / "labels.npy", self.labels)
        atomic_write_json(staged / "gallery.json", {"name": self.name, "model": self.model,
                                                    "threshold": self.threshold, "people": self.people,
                                                    "standin": True})
        version = store.publish("galleries", self.name, staged)
        return StandInGallery(self.name, version, self.model, self.threshold, self.people, self.vectors,
                              self.labels)


def new_gallery(name: str, model_version: dict, threshold: float = DEFAULT_THRESHOLD) -> StandInGallery:
    return StandInGallery(name, 0, model_version, threshold, [], np.zeros((0, DIM), np.float32),
                          np.zeros(0, np.int64))


def open_gallery(path: str | Path, name: str | None = None) -> StandInGallery:
    """THE seam for galleries: a gallery version's folder -> a searchable gallery (issue 5 replaces this)."""
    return StandInGallery.load(path, name)


def enroll_folders(store: ArtifactStore, gallery_name: str, root: str | Path, embedder, detector,
                   threshold: float = DEFAULT_THRESHOLD, per_person: int = 0) -> StandInGallery:
    """STAND-IN enrollment: ``root/<person>/<photo>`` -> one exemplar per photo (the photo's main face),
    published as a new version of ``galleries/<gallery_name>`` bound to ``embedder``'s model. Photos without a
    face are skipped. (Issue 5's gallery has the real enrollment.)"""
    from iznet.data.align import choose_face
    from iznet.imageio import is_image_file, read_image
    from iznet.stages import face_crops

    gallery = new_gallery(gallery_name, embedder.version, threshold)
    for person_dir in sorted(p for p in Path(root).iterdir() if p.is_dir()):
        photos = sorted(p for p in person_dir.iterdir() if is_image_file(p))
        photos = photos[:per_person] if per_person else photos
        crops = []
        for photo in photos:
            image = read_image(photo)
            faces = detector.detect(image)
            choice = choose_face(faces, image.shape[1], image.shape[0])
            if choice is not None:
                crops += face_crops(image, [faces[choice.index]], embedder.input_size)
        if crops:
            gallery, _ = gallery.with_exemplars(person_dir.name, embedder.embed(crops), embedder.version["digest"])
    return gallery.publish(store)
