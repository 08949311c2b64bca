"""``iznet data build SRC DST``: folders of photos (one per person) into an aligned face dataset.

For each photo: read it safely, hash it (pHash), detect faces with a teacher, choose the person's face
(largest and most central), align and crop it. Then, over the whole set: drop near-duplicate photos of the
same person, assign each kept face to train/dev/test once and for all, and write verification pairs.

Output (DST)::

    dataset.json        format, build configuration, counts, the last run's timing, the pairs files
    manifest.jsonl      one record per source photo: source, identity, status, reason, split, box, ...
    faces/<id>/<id>_NNNN.jpg   aligned crops (LFW numbering is kept, so LFW pairs files resolve here)
    pairs_dev.txt, pairs_test.txt   LFW-format verification pairs, identity-disjoint folds

Re-running on a grown SRC only processes photos that are new or changed; a photo's split, once recorded,
never changes. A photo that cannot be read or holds no usable face is recorded with the reason and skipped;
the run never stops on one bad file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import re
import shutil
import time
from collections import Counter, defaultdict
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import cv2

from iznet.registry import DEFAULT_DETECTOR
from iznet.data.align import DEFAULT_MARGIN, DEFAULT_SIZE, align_face, choose_face, find_eyes
from iznet.data.pairs import Pair, write_pairs
from iznet.detection.find import detect_faces
from iznet.detection.types import FaceBox
from iznet.data.phash import from_hex, hamming, phash, to_hex
from iznet.errors import IZNetError, NotFoundError, PreconditionError, UserInputError
from iznet.imageio import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, decode_image, encode_image
from iznet.store import atomic_write_bytes, atomic_write_json, atomic_write_text

FORMAT = "iznet-faces/1"
SPLITS = ("train", "dev", "test")
MANIFEST = "manifest.jsonl"
INFO = "dataset.json"
FACES = "faces"


@dataclass(frozen=True)
class BuildConfig:
    """How a dataset is built. The fields in :attr:`FIXED` are part of the dataset's identity: growing an
    existing dataset with different values is refused (build a new one, or ``--rebuild``)."""

    teacher: str = DEFAULT_DETECTOR
    size: int = DEFAULT_SIZE
    margin: float = DEFAULT_MARGIN
    align: bool = True
    min_face: int = 20
    dedup_bits: int = 2
    split_by: str = "image"
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    folds: int = 10
    pairs_per_fold: int = 300
    max_pixels: int = DEFAULT_MAX_PIXELS
    #: For sets of pre-cropped portraits (LFW): when the teacher finds no face, assume a centred square box of
    #: this fraction of the shorter side instead of skipping the photo. 0 turns it off.
    fallback_center: float = 0.0

    FIXED = ("teacher", "size", "margin", "align", "min_face", "dedup_bits", "split_by", "ratios", "seed",
             "fallback_center")

    def __post_init__(self) -> None:
        if self.split_by not in ("image", "identity"):
            raise UserInputError(f"split_by must be 'image' or 'identity', not {self.split_by!r}")
        if len(self.ratios) != 3 or any(r < 0 for r in self.ratios) or abs(sum(self.ratios) - 1) > 1e-6:
            raise UserInputError(f"split ratios must be three non-negative numbers summing to 1, got {self.ratios}")
        if self.size < 16:
            raise UserInputError(f"crop size {self.size} is too small (at least 16)")
        if not 0 <= self.fallback_center <= 1:
            raise UserInputError(f"fallback_center {self.fallback_center} must be between 0 and 1")
        if not 0 <= self.margin <= 2:
            raise UserInputError(f"margin {self.margin} must be between 0 and 2")
        if self.folds < 1 or self.pairs_per_fold < 1:
            raise UserInputError("folds and pairs per fold must be at least 1")

    def to_json(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}


@dataclass
class BuildReport:
    dst: Path
    seconds: float
    scanned: int
    processed: int
    counts: dict[str, int]
    by_reason: dict[str, int]
    by_split: dict[str, int]
    identities: int
    skipped: list[tuple[str, str]]
    pairs: dict[str, dict[str, Any]]
    missing_sources: int


# ---------------------------------------------------------------------------------------------- scanning


def identity_name(folder: str) -> str:
    """A folder name as an identity: whitespace becomes '_' so names fit the pairs format."""
    return re.sub(r"\s+", "_", folder.strip())


def scan_source(src: Path) -> list[tuple[str, str]]:
    """(relative path, identity) for every image file under ``src/<person>/`` (sub-folders included)."""
    if not src.is_dir():
        raise NotFoundError(f"{src}: no such folder (expected one sub-folder of photos per person)")
    found = []
    for person in sorted(p for p in src.iterdir() if p.is_dir() and not p.name.startswith(".")):
        ident = identity_name(person.name)
        for f in sorted(person.rglob("*")):
            if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith("."):
                found.append((f.relative_to(src).as_posix(), ident))
    if not found:
        raise UserInputError(f"{src}: no photos found (expected {src}/<person>/<photo>.jpg|png|pgm)")
    return found


# ------------------------------------------------------------------------------------ per-photo work


_teacher_cache: dict[str, Any] = {}


def _teacher(spec: str):
    if spec not in _teacher_cache:
        from iznet.registry import create_detector

        _teacher_cache[spec] = create_detector(spec)
    return _teacher_cache[spec]


def _worker_init() -> None:
    cv2.setNumThreads(1)  # one process per core; OpenCV's own threads would only contend



def process_photo(task: tuple[str, str, str, int, int, dict[str, Any]]) -> dict[str, Any]:
    """Detect, choose and align the face of one photo. Runs in a worker; never raises for a bad photo."""
    src, rel, ident, size_bytes, mtime_ns, cfg = task
    rec: dict[str, Any] = {"source": rel, "identity": ident, "bytes": size_bytes, "mtime_ns": mtime_ns}
    path = Path(src) / rel
    try:
        data = path.read_bytes()
        rec["sha1"] = hashlib.sha1(data).hexdigest()
        image = decode_image(data, max_pixels=cfg["max_pixels"], max_bytes=max(len(data), 1))
    except (OSError, IZNetError) as exc:
        msg = exc.strerror if isinstance(exc, OSError) else str(exc)
        return {**rec, "status": "skipped", "reason": "unreadable", "detail": msg}
    h, w = image.shape[:2]
    rec["image_wh"] = [w, h]
    rec["phash"] = to_hex(phash(image))
    faces, padded = detect_faces(_teacher(cfg["teacher"]), image, cfg["min_face"])
    rec["teacher"] = cfg["teacher"]
    if padded:
        rec["padded"] = True
    rec["faces_found"] = len(faces)
    if not faces and cfg.get("fallback_center"):
        side = cfg["fallback_center"] * min(w, h)
        faces = [FaceBox((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2, 0.0)]
        rec["fallback"] = "centre box: the teacher found no face"
    if not faces:
        return {**rec, "status": "skipped", "reason": "no_face",
                "detail": f"the {cfg['teacher']} teacher found no face of at least {cfg['min_face']}px"}
    choice = choose_face(faces, w, h)
    face = faces[choice.index]
    rec.update(box=face.as_list(), score=round(float(face.score), 4), choice=choice.reason,
               ambiguous=choice.ambiguous)
    landmarks = face.landmarks
    if landmarks is None and cfg["align"]:
        landmarks = find_eyes(image, face)
    rec["aligned"] = "box" if landmarks is None else ("eyes" if len(landmarks) == 2 else "landmarks")
    if landmarks is not None:
        rec["landmarks"] = [[round(float(x), 1), round(float(y), 1)] for x, y in landmarks]
    crop = align_face(image, face, cfg["size"], cfg["margin"], landmarks)
    rec["status"] = "kept"
    rec["_crop"] = encode_image(crop, ".jpg", 95)
    return rec


# ---------------------------------------------------------------------------------- split and pairs


def _order_key(seed: int, text: str) -> str:
    return hashlib.sha1(f"{seed}:{text}".encode()).hexdigest()


def assign_by_deficit(counts: dict[str, int], ratios: tuple[float, float, float]) -> str:
    """The split furthest below its share once one more item is added (ties go to train, then dev)."""
    total = sum(counts.values()) + 1
    return max(SPLITS, key=lambda s: (ratios[SPLITS.index(s)] * total - counts[s], -SPLITS.index(s)))


def assign_splits(records: list[dict[str, Any]], cfg: BuildConfig) -> None:
    """Give every kept record without a split one. Recorded splits never move, so growth keeps them."""
    kept = [r for r in records if r["status"] == "kept"]
    if cfg.split_by == "identity":
        person_split = {r["identity"]: r["split"] for r in kept if r.get("split")}
        counts = Counter(person_split.values())
        counts = {s: counts.get(s, 0) for s in SPLITS}
        new_people = sorted({r["identity"] for r in kept} - set(person_split), key=lambda p: _order_key(cfg.seed, p))
        for person in new_people:
            person_split[person] = split = assign_by_deficit(counts, cfg.ratios)
            counts[split] += 1
        for r in kept:
            r.setdefault("split", person_split[r["identity"]])
        return
    by_person: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in kept:
        by_person[r["identity"]].append(r)
    for person, recs in by_person.items():
        counts = Counter(r["split"] for r in recs if r.get("split"))
        counts = {s: counts.get(s, 0) for s in SPLITS}
        for r in sorted((r for r in recs if not r.get("split")), key=lambda r: _order_key(cfg.seed, r["source"])):
            r["split"] = assign_by_deficit(counts, cfg.ratios)
            counts[r["split"]] += 1


def _fold_groups(images: dict[str, list[int]], people: list[str], eligible: list[str], k: int, per_fold: int):
    """Deal people into k folds (those with 2+ faces first, so each fold gets some); the same-person pairs
    each fold can give, and the n every fold can afford."""
    groups: list[list[str]] = [[] for _ in range(k)]
    for i, p in enumerate(eligible):
        groups[i % k].append(p)
    for i, p in enumerate(p for p in people if len(images[p]) < 2):
        groups[i % k].append(p)
    same_pool = [[(p, a, b) for p in g if len(images[p]) >= 2 for a, b in combinations(sorted(images[p]), 2)]
                 for g in groups]
    diff_cap = [sum(len(images[p]) * len(images[q]) for p, q in combinations(g, 2)) for g in groups]
    return groups, same_pool, min(per_fold, *(len(s) for s in same_pool), *diff_cap)


def make_pairs(
    images: dict[str, list[int]], folds: int, per_fold: int, seed: int
) -> tuple[list[tuple[list[Pair], list[Pair]]], str]:
    """Identity-disjoint folds of same and different pairs from {person: [image numbers]}.

    Returns (folds, note). Every fold gets the same number n of each kind (the LFW format needs it):
    n = min(per_fold, what the poorest fold can give). Empty folds and a reason when no pair can be made.
    """
    rng = random.Random(seed)
    people = sorted(images, key=lambda p: _order_key(seed, p))
    eligible = [p for p in people if len(images[p]) >= 2]
    if len(people) < 2 or not eligible:
        return [], (f"needs 2+ people, one of them with 2+ faces in this split (has {len(people)} people, "
                    f"{len(eligible)} with 2+); splitting by identity, or larger dev/test ratios, gives pairs")
    # Every fold must hold the same number n of each kind, so more folds can mean fewer pairs in all:
    # take the number of folds (at least 2 when possible, for k-fold thresholds) that yields the most pairs.
    kmax = max(1, min(folds, len(eligible), len(people) // 2))
    best: tuple[int, int, list, list] | None = None
    for k in range(min(2, kmax), kmax + 1):
        groups, same_pool, n = _fold_groups(images, people, eligible, k, per_fold)
        if best is None or k * n > best[0] * best[1]:
            best = (k, n, groups, same_pool)
    k, n, groups, same_pool = best
    if n == 0:
        return [], "some fold has no different-person pair (too few people)"
    out = []
    for fold, (g, pool) in enumerate(zip(groups, same_pool)):
        same = [Pair(p, a, p, b, fold) for p, a, b in rng.sample(pool, n)]
        chosen: set[tuple[str, int, str, int]] = set()
        while len(chosen) < n:
            p, q = rng.sample(g, 2)
            p, q = sorted((p, q))
            chosen.add((p, rng.choice(images[p]), q, rng.choice(images[q])))
        diff = [Pair(p, a, q, b, fold) for p, a, q, b in sorted(chosen)]
        out.append((same, diff))
    note = f"{k} folds x {n} same + {n} different"
    if n < per_fold:
        note += f" (asked for {per_fold}; limited by the people available)"
    return out, note


# ---------------------------------------------------------------------------------------- the build


_NUMBERED = re.compile(r"^(?P<stem>.+)_(?P<n>\d+)$")


def _number_new_faces(records: list[dict[str, Any]]) -> None:
    """Give each new kept face its file number: the source's own (``Name_0003.jpg`` keeps 3) when it is
    free, else the next free number for that person."""
    used: dict[str, set[int]] = defaultdict(set)
    for r in records:
        if r.get("number") is not None:
            used[r["identity"]].add(r["number"])
    for r in records:
        if r["status"] != "kept" or r.get("number") is not None:
            continue
        m = _NUMBERED.match(Path(r["source"]).stem)
        n = int(m["n"]) if m and identity_name(m["stem"]) == r["identity"] else None
        if n is None or n in used[r["identity"]]:
            n = max(used[r["identity"]], default=0) + 1
        used[r["identity"]].add(n)
        r["number"] = n
        r["face"] = f"{FACES}/{r['identity']}/{r['identity']}_{n:04d}.jpg"


def _dedupe(records: list[dict[str, Any]], new_sources: set[str], bits: int) -> None:
    """Mark new kept photos that are near-duplicates (pHash within ``bits``) of an earlier kept photo of the
    same person as duplicates. Earlier = already in the dataset, then source order."""
    if bits < 0:
        return
    kept_by_person: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for r in records:
        if r["status"] == "kept" and r["source"] not in new_sources:
            kept_by_person[r["identity"]].append((from_hex(r["phash"]), r["source"]))
    for r in records:
        if r["status"] != "kept" or r["source"] not in new_sources:
            continue
        h = from_hex(r["phash"])
        twin = next((src for other, src in kept_by_person[r["identity"]] if hamming(h, other) <= bits), None)
        if twin is None:
            kept_by_person[r["identity"]].append((h, r["source"]))
        else:
            r.update(status="duplicate", reason="duplicate", detail=f"near-duplicate of {twin}", duplicate_of=twin)
            r.pop("_crop", None)


def load_manifest(dst: Path) -> list[dict[str, Any]]:
    path = dst / MANIFEST
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _write_manifest(dst: Path, records: Iterable[dict[str, Any]]) -> None:
    lines = [json.dumps({k: v for k, v in r.items() if not k.startswith("_")}, sort_keys=True)
             for r in sorted(records, key=lambda r: r["source"])]
    atomic_write_text(dst / MANIFEST, "".join(line + "\n" for line in lines))


def _check_compatible(dst: Path, cfg: BuildConfig) -> None:
    info_path = dst / INFO
    if not info_path.exists():
        return
    old = json.loads(info_path.read_text()).get("config", {})
    new = cfg.to_json()
    diff = [f"{k}: {old.get(k)!r} -> {new[k]!r}" for k in BuildConfig.FIXED if k in old and old[k] != new[k]]
    if diff:
        raise PreconditionError(
            f"{dst} was built with other settings ({'; '.join(diff)}); its splits and crops would no longer "
            "match. Build into a new folder, or pass --rebuild to start this one over."
        )


def _map_in_order(fn: Callable, tasks: list, workers: int) -> Iterator:
    if workers <= 1 or len(tasks) < 32:
        _worker_init()
        yield from map(fn, tasks)
        return
    # Workers start from a fork server, not by forking this process: a fork copies OpenCV's (or torch's)
    # thread pool in whatever locked state it is in, and the workers then hang on their first cv2 call (seen
    # in the demo, which draws its photos with OpenCV before building).
    ctx = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(max_workers=workers, initializer=_worker_init, mp_context=ctx) as pool:
        yield from pool.map(fn, tasks, chunksize=8)


def build_dataset(
    src: str | Path,
    dst: str | Path,
    cfg: BuildConfig = BuildConfig(),
    *,
    workers: int = 0,
    rebuild: bool = False,
    progress: bool = True,
    checkpoint_every: int = 500,
    on_progress: Callable[[int, int], None] | None = None,
) -> BuildReport:
    """Build or grow ``dst`` from ``src``. ``on_progress(done, total)`` is called after each photo processed in
    this run (a job reports it as task state); the manifest is recorded every ``checkpoint_every`` photos,
    so a run that is killed resumes from its last checkpoint."""
    from tqdm import tqdm

    started = time.perf_counter()
    src, dst = Path(src), Path(dst)
    found = scan_source(src)
    if rebuild and (dst / INFO).exists():
        for name in (MANIFEST, INFO, "pairs_dev.txt", "pairs_test.txt"):
            (dst / name).unlink(missing_ok=True)
        shutil.rmtree(dst / FACES, ignore_errors=True)
    _check_compatible(dst, cfg)
    dst.mkdir(parents=True, exist_ok=True)
    old = {r["source"]: r for r in load_manifest(dst)}

    tasks = []
    for rel, ident in found:
        st = (src / rel).stat()
        prev = old.get(rel)
        if prev and prev.get("bytes") == st.st_size and prev.get("mtime_ns") == st.st_mtime_ns:
            continue
        tasks.append((str(src), rel, ident, st.st_size, st.st_mtime_ns, cfg.to_json()))
    # A changed photo is processed again from scratch; its number and split stay only if it is kept.
    records = {**old}
    workers = workers or os.cpu_count() or 1
    results = _map_in_order(process_photo, tasks, workers)
    bar = tqdm(results, total=len(tasks), desc="faces", unit="photo", disable=not progress or not tasks)
    pending: list[dict[str, Any]] = []
    for i, rec in enumerate(bar, 1):
        prev = old.get(rec["source"])
        if prev and prev.get("status") == "kept":
            if rec["status"] == "kept":
                rec["number"], rec["face"], rec["split"] = prev["number"], prev["face"], prev["split"]
            else:  # the photo changed and no longer gives a face: its old crop goes too
                (dst / prev["face"]).unlink(missing_ok=True)
        records[rec["source"]] = rec
        pending.append(rec)
        if i % checkpoint_every == 0 or i == len(tasks):
            _settle(dst, list(records.values()), {r["source"] for r in pending}, cfg)
            pending.clear()
        if on_progress is not None:
            on_progress(i, len(tasks))
    new_sources = {t[1] for t in tasks}
    if not tasks:
        _settle(dst, list(records.values()), set(), cfg)

    all_records = sorted(records.values(), key=lambda r: r["source"])
    pairs = _write_pairs_files(dst, all_records, cfg)
    present = {rel for rel, _ in found}
    report = _summarise(dst, all_records, started, len(found), len(new_sources), pairs,
                        sum(1 for s in records if s not in present))
    atomic_write_json(dst / INFO, {
        "format": FORMAT,
        "source": str(src.resolve()),
        "config": cfg.to_json(),
        "counts": report.counts,
        "by_reason": report.by_reason,
        "by_split": report.by_split,
        "identities": report.identities,
        "pairs": pairs,
        "last_run": {"scanned": report.scanned, "processed": report.processed, "seconds": round(report.seconds, 2),
                     "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
    })
    return report


def _settle(dst: Path, records: list[dict[str, Any]], new_sources: set[str], cfg: BuildConfig) -> None:
    """Dedupe, number, split and write the crops of the photos processed since the last checkpoint, then
    record the manifest. A crash after this loses nothing before it."""
    records.sort(key=lambda r: r["source"])
    _dedupe(records, new_sources, cfg.dedup_bits)
    _number_new_faces(records)
    assign_splits(records, cfg)
    for r in records:
        crop = r.pop("_crop", None)
        if crop is not None:
            out = dst / r["face"]
            out.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(out, crop)
    _write_manifest(dst, records)


def _write_pairs_files(dst: Path, records: list[dict[str, Any]], cfg: BuildConfig) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for split in ("dev", "test"):
        images: dict[str, list[int]] = defaultdict(list)
        for r in records:
            if r["status"] == "kept" and r.get("split") == split:
                images[r["identity"]].append(r["number"])
        folds, note = make_pairs(images, cfg.folds, cfg.pairs_per_fold, cfg.seed + SPLITS.index(split))
        path = dst / f"pairs_{split}.txt"
        if folds:
            write_pairs(path, folds)
            digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
            out[split] = {"file": path.name, "folds": len(folds), "per_fold": len(folds[0][0]), "sha256": digest,
                          "note": note}
        else:
            path.unlink(missing_ok=True)
            out[split] = {"file": None, "note": note}
    return out


def _summarise(dst: Path, records: list[dict[str, Any]], started: float, scanned: int, processed: int,
               pairs: dict[str, dict[str, Any]], missing: int) -> BuildReport:
    counts = Counter(r["status"] for r in records)
    by_reason = Counter(r["reason"] for r in records if r["status"] != "kept")
    by_split = Counter(r["split"] for r in records if r["status"] == "kept")
    skipped = [(r["source"], r.get("detail") or r["reason"]) for r in records if r["status"] != "kept"]
    return BuildReport(
        dst=dst,
        seconds=time.perf_counter() - started,
        scanned=scanned,
        processed=processed,
        counts={s: counts.get(s, 0) for s in ("kept", "skipped", "duplicate")},
        by_reason=dict(sorted(by_reason.items())),
        by_split={s: by_split.get(s, 0) for s in SPLITS},
        identities=len({r["identity"] for r in records if r["status"] == "kept"}),
        skipped=skipped,
        pairs=pairs,
        missing_sources=missing,
    )
