"""A gallery: enrolled people, several exemplars each, their vectors in FAISS, versioned in the artifact store.

A :class:`Gallery` is an in-memory, editable copy of one version. Edits (enroll, rename, remove, re-index)
touch only that copy; :meth:`GalleryStore.save` writes the whole of it as a *new* version: it stages a folder,
writes the crops, the SQLite database, the vectors and the FAISS index into it, and publishes it with one
rename and an atomic switch of ``CURRENT``. A crash anywhere before the switch leaves the previous version
current and intact (only a stray ``.staging-*`` folder). Stray staging folders hold face crops, so they are
removed when a :class:`GalleryStore` is opened and by ``iznet gallery gc`` (:meth:`GalleryStore.gc`): a writer
stages only while it holds the gallery's lock (``.lock``, touched when taken), so a staging folder is stale when
the lock is free, or older than the lock's current holder. Old versions stay readable by number until they are
deleted.

Version folder (``<store>/galleries/<name>/<N>/``)::

    gallery.json      format, model (name, version, digest), rule, threshold, counts, the parent version
    gallery.sqlite    tables people, exemplars, sources (every enrollment attempt and its outcome), versions
    vectors.npy, ids.npy   the exemplar vectors (float32, L2-normalised) and their exemplar ids
    index.faiss       the FAISS index over them (IndexIDMap2 of IndexFlatIP, or HNSW past a size)
    crops/<person id>/<exemplar id>.jpg   aligned crops (unless the gallery keeps none, for privacy)

A gallery is bound to the embedding model that made its vectors: searching it with vectors of another model
raises :class:`~iznet.errors.PreconditionError`. A new model means :func:`reindex`: the stored crops are
embedded again into a new version, which becomes current in one step.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import os
import re
import shutil
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from iznet.errors import NotFoundError, PreconditionError, UserInputError
from iznet.gallery import calibrate as cal
from iznet.gallery import index as idx
from iznet.imageio import decode_image, encode_image
from iznet.sizes import EMBEDDING_DIM
from iznet.store import ArtifactStore, atomic_write_json

FORMAT = "iznet-gallery/1"
KIND = "galleries"
UNKNOWN = "unknown"
RULES = ("nearest", "knn", "centroid")
#: Chosen by measurement on dev data (``python -m bench.gallery_rules``; see docs/gallery.md): the per-person
#: centroid picks the person; the score is still the similarity to that person's nearest exemplar.
DEFAULT_RULE = "centroid"
DEFAULT_K = 5

#: Test hook: called with the name of each step of :meth:`GalleryStore.save` (to inject a failure or a pause).
STEP_HOOK: Callable[[str], None] | None = None


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _step(name: str) -> None:
    if STEP_HOOK is not None:
        STEP_HOOK(name)


@dataclass
class Person:
    id: str
    name: str
    created: str = field(default_factory=_now)


@dataclass
class Exemplar:
    id: int
    person_id: str
    source: str = ""
    note: str = ""
    added: str = field(default_factory=_now)
    #: Path of the crop relative to the version folder, or "" when crops are not kept.
    crop: str = ""


@dataclass
class Candidate:
    name: str
    person_id: str
    score: float

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "person_id": self.person_id, "score": round(float(np.float32(self.score)), 4)}


@dataclass
class Match:
    """Who a vector is: ``name`` (or ``unknown``), the similarity ``score`` to the decided person's nearest
    exemplar, the matching Euclidean ``distance``, the ``threshold`` that decided, and the runner-up people."""

    name: str
    unknown: bool
    score: float
    distance: float
    threshold: float
    person_id: str = ""
    #: The best person by the rule even when the answer is unknown (what it would have said).
    nearest: str = ""
    rule: str = DEFAULT_RULE
    candidates: list[Candidate] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        # float32 first: the precision the numbers cross gRPC with (one JSON in-process and via the gateway).
        f32 = lambda v: float(np.float32(v))  # noqa: E731
        return {"name": self.name, "unknown": self.unknown, "score": round(f32(self.score), 6),
                "distance": round(f32(self.distance), 6), "threshold": round(f32(self.threshold), 6),
                "person_id": self.person_id, "nearest": self.nearest, "rule": self.rule,
                "candidates": [c.to_json() for c in self.candidates]}


def check_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise UserInputError("a person needs a non-empty name")
    if name.lower() == UNKNOWN:
        raise UserInputError(f"{name!r} is reserved for faces no one matches; choose another name")
    if "/" in name or "\\" in name or len(name) > 200:
        raise UserInputError(f"bad person name {name!r} (no slashes, at most 200 characters)")
    return name


def model_label(model: dict[str, Any]) -> str:
    return f"{model.get('name')} v{model.get('version')} ({model.get('digest')})"


class Gallery:
    def __init__(self, name: str, model: dict[str, Any], *, keep_crops: bool = True, rule: str = DEFAULT_RULE,
                 k: int = DEFAULT_K, index_kind: str = "auto", far: float = cal.DEFAULT_FAR,
                 detector: str | None = None):
        if rule not in RULES:
            raise UserInputError(f"unknown decision rule {rule!r}: choose one of {', '.join(RULES)}")
        idx.choose_kind(index_kind, 0)
        self.name = name
        self.model = {k_: str(v) for k_, v in model.items()}
        self.keep_crops = keep_crops
        self.rule = rule
        self.k = max(1, int(k))
        self.index_kind = index_kind
        self.far = far
        #: The detector enrollment used; labelling defaults to it so probe crops are framed like exemplars.
        #: Not given: today's default detector (what a Pipeline made without one enrolls with).
        if detector is None:
            from iznet.registry import DEFAULT_DETECTOR

            detector = DEFAULT_DETECTOR
        self.detector = detector
        self.threshold: dict[str, Any] = {}
        self.people: dict[str, Person] = {}
        self.exemplars: dict[int, Exemplar] = {}
        self.sources: list[dict[str, Any]] = []
        self.history: list[dict[str, Any]] = []
        self.version: int | None = None  # the stored version this copy was loaded from (None: never saved)
        self.next_id = 1
        self._vectors: dict[int, np.ndarray] = {}
        self._new_crops: dict[int, bytes] = {}  # encoded crops not yet in any version folder
        self._crop_dir: Path | None = None  # folder of the version the existing crops live in
        self._index = None
        self._centroids: tuple[np.ndarray, list[str]] | None = None
        self._by_person: dict[str, list[int]] | None = None
        self._dirty = True

    # ------------------------------------------------------------------------------------------- model

    def check_model(self, model: dict[str, Any]) -> None:
        """Refuse vectors from a model other than the one that built this gallery."""
        if str(model.get("digest")) != self.model.get("digest"):
            raise PreconditionError(
                f"gallery {self.name!r} (version {self.version}) was built with {model_label(self.model)}; "
                f"its vectors cannot be compared with {model_label(model)}. Use that model, or "
                f"`iznet gallery reindex {self.name} --model ...` to make a version for the new one")

    # ------------------------------------------------------------------------------------------- people

    def person(self, name_or_id: str) -> Person:
        for p in self.people.values():
            if p.name == name_or_id:
                return p
        if name_or_id in self.people:
            return self.people[name_or_id]
        raise NotFoundError(f"no person {name_or_id!r} in gallery {self.name!r}")

    def has_person(self, name: str) -> bool:
        return any(p.name == name for p in self.people.values())

    def add_person(self, name: str) -> Person:
        name = check_name(name)
        if self.has_person(name):
            raise UserInputError(f"{name!r} is already in gallery {self.name!r}")
        p = Person(uuid.uuid4().hex[:12], name)
        self.people[p.id] = p
        return p

    def exemplars_of(self, person_id: str) -> list[Exemplar]:
        return [e for e in self.exemplars.values() if e.person_id == person_id]

    def add_exemplars(self, person: str, vectors: np.ndarray, crops: Sequence[np.ndarray | None] | None = None,
                      sources: Sequence[str] | None = None, notes: Sequence[str] | None = None,
                      model: dict[str, Any] | None = None) -> list[int]:
        """Add vectors (and their aligned crops) to ``person``, creating the person if new."""
        if model is not None:
            self.check_model(model)
        vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        n = len(vectors)
        if vectors.shape[1] != self.dim and self._vectors:
            raise UserInputError(f"vectors have {vectors.shape[1]} dimensions, the gallery {self.dim}")
        norms = np.linalg.norm(vectors, axis=1)
        if n and (not np.all(np.isfinite(vectors)) or np.any(np.abs(norms - 1) > 1e-3)):
            raise UserInputError("exemplar vectors must be finite and L2-normalised")
        p = self.person(person) if self.has_person(person) else self.add_person(person)
        crops = list(crops) if crops is not None else [None] * n
        sources = list(sources) if sources is not None else [""] * n
        notes = list(notes) if notes is not None else [""] * n
        ids = []
        for v, crop, src, note in zip(vectors, crops, sources, notes):
            eid = self.next_id
            self.next_id += 1
            ex = Exemplar(eid, p.id, src, note)
            if self.keep_crops and crop is not None:
                self._new_crops[eid] = crop if isinstance(crop, bytes) else encode_image(crop, ".jpg", 95)
                ex.crop = f"crops/{p.id}/{eid}.jpg"
            self.exemplars[eid] = ex
            self._vectors[eid] = v
            ids.append(eid)
        self._changed()
        return ids

    def rename(self, old: str, new: str) -> Person:
        p = self.person(old)
        new = check_name(new)
        if new != p.name and self.has_person(new):
            raise UserInputError(f"{new!r} is already in gallery {self.name!r}")
        p.name = new
        self._centroids = None
        return p

    def remove(self, name: str) -> int:
        """Remove a person with all their vectors, crops and enrollment records; returns exemplars removed."""
        p = self.person(name)
        gone = [e.id for e in self.exemplars_of(p.id)]
        for eid in gone:
            del self.exemplars[eid]
            self._vectors.pop(eid, None)
            self._new_crops.pop(eid, None)
        del self.people[p.id]
        self.sources = [s for s in self.sources if s.get("person_id") != p.id and s.get("person") != p.name]
        self._changed()
        return len(gone)

    def record_source(self, source: str, person: str, status: str, reason: str = "", exemplar_id: int | None = None,
                      sha1: str = "") -> None:
        """Note an enrollment attempt (enrolled or rejected, and why) in the gallery's ``sources`` table."""
        pid = self.person(person).id if self.has_person(person) else ""
        self.sources.append({"source": source, "person": person, "person_id": pid, "status": status,
                             "reason": reason, "exemplar_id": exemplar_id, "sha1": sha1, "at": _now()})

    def crop(self, exemplar_id: int) -> np.ndarray | None:
        """The stored aligned crop of an exemplar (BGR), or None when crops are not kept."""
        data = self._new_crops.get(exemplar_id)
        if data is None:
            ex = self.exemplars[exemplar_id]
            if not ex.crop or self._crop_dir is None or not (self._crop_dir / ex.crop).is_file():
                return None
            data = (self._crop_dir / ex.crop).read_bytes()
        return decode_image(data)

    # ------------------------------------------------------------------------------------------- search

    @property
    def dim(self) -> int:
        for v in self._vectors.values():
            return int(v.shape[0])
        return EMBEDDING_DIM

    def ids_and_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        ids = np.array(sorted(self._vectors), dtype=np.int64)
        vecs = np.stack([self._vectors[i] for i in ids]) if len(ids) else np.zeros((0, self.dim), np.float32)
        return ids, vecs.astype(np.float32)

    def _changed(self) -> None:
        self._index = None
        self._centroids = None
        self._by_person = None
        self._dirty = True

    @property
    def index(self):
        if self._index is None:
            ids, vecs = self.ids_and_vectors()
            self._index = idx.build_index(vecs, ids, self.index_kind)
        return self._index

    def by_person(self) -> dict[str, list[int]]:
        """Exemplar ids per person id (cached until the next edit)."""
        if self._by_person is None:
            groups: dict[str, list[int]] = {}
            for e in self.exemplars.values():
                groups.setdefault(e.person_id, []).append(e.id)
            self._by_person = groups
        return self._by_person

    def centroids(self) -> tuple[np.ndarray, list[str]]:
        if self._centroids is None:
            groups = self.by_person()
            pids = sorted(groups, key=lambda i: self.people[i].name)
            rows = []
            for pid in pids:
                m = np.mean([self._vectors[i] for i in groups[pid]], axis=0)
                rows.append(m / max(np.linalg.norm(m), 1e-12))
            mat = np.stack(rows).astype(np.float32) if rows else np.zeros((0, self.dim), np.float32)
            self._centroids = (mat, pids)
        return self._centroids

    @property
    def threshold_value(self) -> float:
        if not self.threshold:
            self.calibrate_self()
        return float(self.threshold["value"])

    def search(self, queries: np.ndarray, *, model: dict[str, Any] | None = None, threshold: float | None = None,
               rule: str | None = None, k: int | None = None, candidates: int = 3) -> list[Match]:
        """One :class:`Match` per query vector. ``threshold`` overrides the calibrated one (None or 0: keep)."""
        if model is not None:
            self.check_model(model)
        rule = rule or self.rule
        if rule not in RULES:
            raise UserInputError(f"unknown decision rule {rule!r}: choose one of {', '.join(RULES)}")
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if len(queries) and queries.shape[1] != self.dim:
            raise UserInputError(f"query vectors have {queries.shape[1]} dimensions, the gallery {self.dim}")
        thr = float(threshold) if threshold else (self.threshold_value if self.exemplars else 1.0)
        k = max(1, k or self.k)
        depth = min(max(k, 16 * max(1, candidates)), max(1, len(self.exemplars)))
        scores, ids = idx.search(self.index, queries, depth)
        out = []
        for qi, q in enumerate(queries):
            # Best score per person among the neighbours found, closest first.
            best: dict[str, float] = {}
            for s, i in zip(scores[qi], ids[qi]):
                if i < 0:
                    continue
                pid = self.exemplars[int(i)].person_id
                if pid not in best:
                    best[pid] = float(s)
            if rule == "nearest":
                order = list(best)
            elif rule == "knn":
                votes: dict[str, float] = {}
                for s, i in zip(scores[qi][:k], ids[qi][:k]):
                    if i >= 0:
                        pid = self.exemplars[int(i)].person_id
                        votes[pid] = votes.get(pid, 0.0) + float(s)
                order = sorted(votes, key=lambda p: -votes[p]) + [p for p in best if p not in votes]
            else:
                mat, pids = self.centroids()
                cs = mat @ q if len(pids) else np.zeros(0)
                order = [pids[j] for j in np.argsort(-cs)]
                for pid in order[:1 + candidates]:
                    if pid not in best:  # its nearest exemplar was not among the neighbours searched
                        best[pid] = max(float(self._vectors[i] @ q) for i in self.by_person()[pid])
            order = [p for p in order if p in best]
            if not order:
                out.append(Match(UNKNOWN, True, -1.0, 2.0, thr, rule=rule))
                continue
            top = order[0]
            score = best[top]
            known = score >= thr
            cands = [Candidate(self.people[p].name, p, best[p]) for p in order[1:1 + candidates]]
            out.append(Match(self.people[top].name if known else UNKNOWN, not known, score, idx.distance(score),
                             thr, top if known else "", self.people[top].name, rule, cands))
        return out

    # -------------------------------------------------------------------------------------- calibration

    def calibrate_self(self, far: float | None = None) -> dict[str, Any]:
        """Threshold from the gallery's own exemplars (cross-person pairs are the impostors)."""
        far = far or self.far
        ids, vecs = self.ids_and_vectors()
        labels = [self.exemplars[int(i)].person_id for i in ids]
        genuine, impostor = cal.self_pairs(vecs, labels)
        if len(impostor) == 0:
            self.threshold = {"value": 0.5, "far": far, "source": "default",
                              "note": "fewer than two people enrolled: a fixed 0.5 until there are impostor pairs"}
        else:
            self.threshold = {**cal.threshold_at_far(genuine, impostor, far), "source": "self"}
        self.threshold["model_digest"] = self.model.get("digest")
        return self.threshold

    def set_threshold(self, calibration: dict[str, Any]) -> None:
        self.threshold = {**calibration, "model_digest": self.model.get("digest")}

    # ---------------------------------------------------------------------------------------------- info

    def info(self) -> dict[str, Any]:
        return {"format": FORMAT, "name": self.name, "version": self.version, "model": self.model,
                "people": len(self.people), "exemplars": len(self.exemplars), "keep_crops": self.keep_crops,
                "rule": self.rule, "k": self.k, "index": idx.choose_kind(self.index_kind, len(self.exemplars)),
                "index_setting": self.index_kind, "far": self.far, "detector": self.detector,
                "threshold": self.threshold,
                "next_id": self.next_id}

    def version_info(self) -> dict[str, Any]:
        """The fields of iznet.v1.GalleryVersion."""
        model = {k: self.model.get(k, "") for k in ("name", "version", "digest", "kind", "chip")}
        return {"name": self.name, "version": self.version or 0, "model": model,
                "people": len(self.people), "exemplars": len(self.exemplars),
                "threshold": round(float(self.threshold_value), 6) if self.exemplars else 0.0}

    def __repr__(self) -> str:
        return (f"Gallery({self.name!r}, version={self.version}, people={len(self.people)}, "
                f"exemplars={len(self.exemplars)}, model={self.model.get('name')})")


# ----------------------------------------------------------------------------------------- persistence

SCHEMA = """
CREATE TABLE people (id TEXT PRIMARY KEY, name TEXT UNIQUE NOT NULL, created TEXT);
CREATE TABLE exemplars (id INTEGER PRIMARY KEY, person_id TEXT NOT NULL REFERENCES people(id),
                        source TEXT, note TEXT, added TEXT, crop TEXT);
CREATE TABLE sources (id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT, person TEXT, person_id TEXT,
                      status TEXT, reason TEXT, exemplar_id INTEGER, sha1 TEXT, at TEXT);
CREATE TABLE versions (version INTEGER PRIMARY KEY, parent INTEGER, action TEXT, model_name TEXT,
                       model_digest TEXT, people INTEGER, exemplars INTEGER, at TEXT);
"""


#: The staging folders :meth:`ArtifactStore.stage` makes (not a job's resumable ``.staging-job-*``).
_STAGING = re.compile(r"^\.staging-[0-9a-f]{12}$")


@dataclass
class StaleStaging:
    path: Path
    bytes: int
    age_s: float


class GalleryStore:
    """Galleries in an artifact store (kind ``galleries``). Opening one removes the stale staging folders
    of writers that died (see the module docstring); ``gc=False`` leaves them."""

    def __init__(self, root: str | os.PathLike[str], gc: bool = True):
        self.store = root if isinstance(root, ArtifactStore) else ArtifactStore(root)
        if gc:
            try:
                self.gc()
            except OSError:  # a read-only store, or one that does not exist yet: nothing to do here
                pass

    def names(self) -> list[str]:
        return self.store.names(KIND)

    def exists(self, name: str) -> bool:
        return bool(self.store.versions(KIND, name)) and (self.store.dir(KIND, name) / "CURRENT").exists()

    def versions(self, name: str) -> list[int]:
        return self.store.versions(KIND, name)

    def current_version(self, name: str) -> int:
        try:
            return self.store.current_version(KIND, name)
        except NotFoundError:
            known = ", ".join(self.names()) or "none yet"
            raise NotFoundError(f"no gallery {name!r} in {self.store.root} (galleries: {known})") from None

    def create(self, name: str, model: dict[str, Any], **kwargs: Any) -> Gallery:
        self.store.dir(KIND, name)  # validates the name
        if self.exists(name):
            raise UserInputError(f"gallery {name!r} already exists in {self.store.root}")
        return Gallery(name, model, **kwargs)

    def load(self, name: str, version: int | None = None) -> Gallery:
        v = self.current_version(name) if version is None else int(version)
        folder = self.store.dir(KIND, name) / str(v)
        if not (folder / "gallery.json").is_file():
            raise NotFoundError(f"gallery {name!r} has no version {v} (versions: {self.versions(name)})")
        meta = json.loads((folder / "gallery.json").read_text())
        if meta.get("format") != FORMAT:
            raise UserInputError(f"{folder}: unknown gallery format {meta.get('format')!r}")
        g = Gallery(name, meta["model"], keep_crops=meta["keep_crops"], rule=meta["rule"], k=meta["k"],
                    index_kind=meta.get("index_setting", "auto"), far=meta.get("far", cal.DEFAULT_FAR),
                    detector=meta.get("detector", "haar"))
        g.threshold = meta.get("threshold") or {}
        g.next_id = int(meta["next_id"])
        g.version = v
        g._crop_dir = folder
        with contextlib.closing(sqlite3.connect(f"file:{folder / 'gallery.sqlite'}?mode=ro", uri=True)) as db:
            for pid, pname, created in db.execute("SELECT id, name, created FROM people"):
                g.people[pid] = Person(pid, pname, created)
            for row in db.execute("SELECT id, person_id, source, note, added, crop FROM exemplars ORDER BY id"):
                g.exemplars[row[0]] = Exemplar(*row)
            cols = ["source", "person", "person_id", "status", "reason", "exemplar_id", "sha1", "at"]
            g.sources = [dict(zip(cols, r)) for r in db.execute(f"SELECT {', '.join(cols)} FROM sources ORDER BY id")]
            cols = ["version", "parent", "action", "model_name", "model_digest", "people", "exemplars", "at"]
            g.history = [dict(zip(cols, r)) for r in db.execute(f"SELECT {', '.join(cols)} FROM versions ORDER BY version")]
        ids = np.load(folder / "ids.npy")
        vecs = np.load(folder / "vectors.npy")
        g._vectors = {int(i): v for i, v in zip(ids, vecs)}
        index = idx.read_index(folder / "index.faiss")
        g._index = index if index.ntotal == len(ids) else None
        g._dirty = False
        return g

    @contextlib.contextmanager
    def _lock(self, name: str) -> Iterator[None]:
        base = self.store.dir(KIND, name)
        base.mkdir(parents=True, exist_ok=True)
        with open(base / ".lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            os.utime(base / ".lock")  # when the holder took it: its staging folders are all newer (see gc)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def save(self, g: Gallery, action: str = "update", make_current: bool = True) -> int:
        """Write ``g`` as a new version and (by default) make it current; returns the version number.

        Refused if someone else saved a newer version of the gallery since ``g`` was loaded (load it again).
        """
        with self._lock(g.name):
            existing = self.versions(g.name)
            if g.version is None and self.exists(g.name):
                raise UserInputError(f"gallery {g.name!r} already exists in {self.store.root}")
            if g.version is not None and existing and self.current_version(g.name) != g.version and make_current:
                raise PreconditionError(
                    f"gallery {g.name!r} changed while this edit was made (now version "
                    f"{self.current_version(g.name)}, the edit started from {g.version}); run it again")
            if not g.threshold or g.threshold.get("source") in ("self", "default") \
                    or g.threshold.get("model_digest") != g.model.get("digest"):
                g.calibrate_self()
            new_version = max(existing, default=0) + 1
            staged = self.store.stage(KIND, g.name)
            try:
                _step("staged")
                self._write(g, staged, action, new_version)
                _step("written")
                version = self.store.publish(KIND, g.name, staged, make_current=False)
                _step("published")
                if make_current:
                    self.store.set_current(KIND, g.name, version)
                _step("current")
            except BaseException:
                shutil.rmtree(staged, ignore_errors=True)
                raise
        g.version = version
        g._crop_dir = self.store.dir(KIND, g.name) / str(version)
        g._new_crops.clear()
        g._dirty = False
        return version

    def _write(self, g: Gallery, folder: Path, action: str, version: int) -> None:
        # 1. crops: new ones written, kept ones hard-linked from the version they live in.
        if g.keep_crops:
            for e in g.exemplars.values():
                if not e.crop:
                    continue
                dst = folder / e.crop
                dst.parent.mkdir(parents=True, exist_ok=True)
                if e.id in g._new_crops:
                    dst.write_bytes(g._new_crops[e.id])
                elif g._crop_dir is not None and (g._crop_dir / e.crop).is_file():
                    try:
                        os.link(g._crop_dir / e.crop, dst)
                    except OSError:
                        shutil.copy2(g._crop_dir / e.crop, dst)
                else:
                    e.crop = ""
        _step("crops")
        # 2. the database.
        g.history = [h for h in g.history if h["version"] != version] + [{
            "version": version, "parent": g.version, "action": action, "model_name": g.model.get("name"),
            "model_digest": g.model.get("digest"), "people": len(g.people), "exemplars": len(g.exemplars),
            "at": _now()}]
        with contextlib.closing(sqlite3.connect(folder / "gallery.sqlite")) as db:
            db.executescript(SCHEMA)
            db.executemany("INSERT INTO people VALUES (?, ?, ?)", [(p.id, p.name, p.created) for p in g.people.values()])
            db.executemany("INSERT INTO exemplars VALUES (?, ?, ?, ?, ?, ?)",
                           [(e.id, e.person_id, e.source, e.note, e.added, e.crop) for e in g.exemplars.values()])
            db.executemany("INSERT INTO sources (source, person, person_id, status, reason, exemplar_id, sha1, at) "
                           "VALUES (:source, :person, :person_id, :status, :reason, :exemplar_id, :sha1, :at)", g.sources)
            db.executemany("INSERT INTO versions VALUES (:version, :parent, :action, :model_name, :model_digest, "
                           ":people, :exemplars, :at)", g.history)
            db.commit()
        _step("database")
        # 3. vectors and the index.
        ids, vecs = g.ids_and_vectors()
        np.save(folder / "ids.npy", ids)
        np.save(folder / "vectors.npy", vecs)
        idx.write_index(g.index, folder / "index.faiss")
        _step("index")
        # 4. the description, last: a version folder without it is never loaded.
        meta = g.info()
        meta.update(version=version, parent=g.version, action=action, saved=_now())
        atomic_write_json(folder / "gallery.json", meta)
        with contextlib.suppress(OSError):
            for path in folder.rglob("*"):
                if path.is_file():
                    with open(path, "rb") as fh:
                        os.fsync(fh.fileno())

    def switch(self, name: str, version: int) -> None:
        """Make an existing version current (e.g. a re-indexed one published with ``make_current=False``)."""
        with self._lock(name):
            if not (self.store.dir(KIND, name) / str(version) / "gallery.json").is_file():
                raise NotFoundError(f"gallery {name!r} has no version {version} (versions: {self.versions(name)})")
            self.store.set_current(KIND, name, int(version))

    def discard_staging(self, name: str) -> int:
        return self.store.discard_staging(KIND, name)

    def stale_staging(self, name: str | None = None) -> list[StaleStaging]:
        """Staging folders of writers that are gone: all of a gallery whose lock is free; while a writer
        holds it, those older than the moment it took the lock."""
        base = self.store.root / KIND
        names = [name] if name is not None else sorted(p.name for p in base.iterdir() if p.is_dir()) \
            if base.is_dir() else []
        out, now = [], time.time()
        for n in names:
            folder = self.store.dir(KIND, n)
            staged = [p for p in folder.glob(".staging-*") if _STAGING.match(p.name) and p.is_dir()] \
                if folder.is_dir() else []
            if not staged:
                continue
            with open(folder / ".lock", "a+") as fh:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    busy_since = None
                except BlockingIOError:
                    busy_since = os.fstat(fh.fileno()).st_mtime
                try:
                    for p in staged:
                        mtime = p.stat().st_mtime
                        if busy_since is None or mtime < busy_since:
                            size = sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
                            out.append(StaleStaging(p, size, now - mtime))
                finally:
                    if busy_since is None:
                        fcntl.flock(fh, fcntl.LOCK_UN)
        return out

    def gc(self, name: str | None = None) -> list[StaleStaging]:
        """Remove the stale staging folders (of gallery ``name``, or of every gallery); returns them."""
        gone = self.stale_staging(name)
        for s in gone:
            shutil.rmtree(s.path, ignore_errors=True)
        return gone


def reindex(gstore: GalleryStore, name: str, embedder, *, make_current: bool = True, batch: int = 64,
            calibration: dict[str, Any] | None = None, progress: bool = False,
            spec: str | None = None) -> tuple[int, int]:
    """Embed the stored crops of gallery ``name`` with ``embedder`` into a new version.

    Returns (old version, new version). The old version stays on disk and readable; with ``make_current``
    the new one becomes current in one atomic step (otherwise switch later with :meth:`GalleryStore.switch`).
    """
    old = gstore.load(name)
    if not old.keep_crops:
        raise PreconditionError(f"gallery {name!r} keeps no face crops (privacy opt-out), so it cannot be "
                                "re-embedded; enroll the people again with the new model")
    missing = [e for e in old.exemplars.values() if not e.crop or old.crop(e.id) is None]
    if missing:
        raise PreconditionError(f"gallery {name!r}: {len(missing)} exemplar(s) have no stored crop "
                                f"(e.g. {missing[0].source or missing[0].id}); cannot re-embed them")
    from iznet.gallery.embedders import model_record

    new = Gallery(name, model_record(embedder, spec), keep_crops=True, rule=old.rule, k=old.k, index_kind=old.index_kind,
                  far=old.far, detector=old.detector)
    new.people = {pid: Person(p.id, p.name, p.created) for pid, p in old.people.items()}
    new.sources = list(old.sources)
    new.history = list(old.history)
    new.next_id = old.next_id
    new.version = old.version
    new._crop_dir = old._crop_dir
    exemplars = list(old.exemplars.values())
    it = range(0, len(exemplars), batch)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc=f"re-embedding {name}", unit="batch")
    for start in it:
        chunk = exemplars[start:start + batch]
        vecs = embedder.embed([old.crop(e.id) for e in chunk])
        for e, v in zip(chunk, vecs):
            new.exemplars[e.id] = Exemplar(e.id, e.person_id, e.source, e.note, e.added, e.crop)
            new._vectors[e.id] = np.asarray(v, np.float32)
    calibration = calibration or getattr(embedder, "calibration", None)
    if calibration:
        new.set_threshold(calibration)
    v = gstore.save(new, action=f"reindex from v{old.version} ({old.model.get('name')})", make_current=make_current)
    return int(old.version or 0), v
