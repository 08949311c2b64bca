"""Face crops for training and evaluation, held in memory as uint8 arrays.

Sources:
* a folder with one sub-folder per person (``<root>/<person>/*.jpg``; e.g. ``att_orl`` or raw LFW), or
* a dataset built by ``iznet data build`` (``dataset.json`` + ``faces/``; its ``train`` split is used).

LFW-format pairs files (``iznet.data.pairs.read_pairs`` when present) name people to hold out: with
``exclude_folds`` every person that appears in those folds' pairs is removed from training, so a model can be
trained on LFW folds 1-4 and judged on fold 5 honestly.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from iznet.embedding.preprocess import crop_resize
from iznet.errors import NotFoundError, UserInputError
from iznet.imageio import IMAGE_SUFFIXES, read_image

# ------------------------------------------------------------------------------------------- pairs files


@dataclass
class PairList:
    """Verification pairs: paths relative to a faces root, same flags and fold ids."""

    left: list[str]
    right: list[str]
    same: np.ndarray
    fold: np.ndarray

    def people(self, folds=None) -> set[str]:
        out = set()
        for a, b, f in zip(self.left, self.right, self.fold):
            if folds is None or int(f) in folds:
                out.add(Path(a).parent.name)
                out.add(Path(b).parent.name)
        return out

    def select(self, folds) -> "PairList":
        m = np.isin(self.fold, list(folds))
        return PairList([x for x, k in zip(self.left, m) if k], [x for x, k in zip(self.right, m) if k],
                        self.same[m], self.fold[m])

    def __len__(self) -> int:
        return len(self.left)


def load_pairs(path: str | Path) -> PairList:
    """Read an LFW ``pairs.txt`` (header ``folds<TAB>n``; per fold n same then n different lines).
    Folds are numbered from 1. Uses the dataset builder's parser when it is available."""
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"pairs file not found: {path}")
    try:
        from iznet.data.pairs import read_pairs  # the dataset builder's parser
    except ImportError:
        read_pairs = None
    if read_pairs is not None:
        try:
            return _from_builder(read_pairs(path))
        except (AttributeError, TypeError, KeyError):
            pass  # unexpected shape: fall back to the plain parser below
    return _parse_lfw_pairs(path)


def _from_builder(obj) -> PairList:
    left, right, same, fold = [], [], [], []
    folds = getattr(obj, "folds", obj)
    for fi, f in enumerate(folds, start=1):
        for kind, flag in (("same", 1), ("different", 0)):
            for p in getattr(f, kind):
                a, b = (p[0], p[1]) if isinstance(p, (tuple, list)) else (p.left, p.right)
                left.append(str(a))
                right.append(str(b))
                same.append(flag)
                fold.append(fi)
    return PairList(left, right, np.array(same, bool), np.array(fold, np.int64))


def _parse_lfw_pairs(path: Path) -> PairList:
    lines = [ln.rstrip("\n") for ln in path.read_text().splitlines() if ln.strip()]
    try:
        head = lines[0].split()
        nfolds, n = (int(head[0]), int(head[1])) if len(head) == 2 else (1, int(head[0]))
    except (ValueError, IndexError):
        raise UserInputError(f"{path}: first line must be '<folds>\\t<pairs per class>'") from None
    body = lines[1:]
    if len(body) != nfolds * 2 * n:
        raise UserInputError(f"{path}: expected {nfolds * 2 * n} pair lines, found {len(body)}")
    left, right, same, fold = [], [], [], []
    for k, ln in enumerate(body):
        p = ln.split("\t") if "\t" in ln else ln.split()
        if len(p) == 3:
            a, b, s = (p[0], int(p[1])), (p[0], int(p[2])), 1
        elif len(p) == 4:
            a, b, s = (p[0], int(p[1])), (p[2], int(p[3])), 0
        else:
            raise UserInputError(f"{path}:{k + 2}: malformed pair line {ln!r}")
        left.append(f"{a[0]}/{a[0]}_{a[1]:04d}.jpg")
        right.append(f"{b[0]}/{b[0]}_{b[1]:04d}.jpg")
        same.append(s)
        fold.append(k // (2 * n) + 1)
    return PairList(left, right, np.array(same, bool), np.array(fold, np.int64))


# ------------------------------------------------------------------------------------------- face sets


@dataclass
class FaceSet:
    """Crops as uint8 BGR (N, S, S, 3) with integer labels and the names behind them."""

    images: np.ndarray
    labels: np.ndarray
    names: list[str]
    paths: list[str] = field(default_factory=list)
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)


def resolve_faces_root(data: str | Path) -> tuple[Path, dict]:
    """The folder holding ``<person>/`` sub-folders, and facts about the source for the model card."""
    data = Path(data)
    if not data.exists():
        raise NotFoundError(f"data not found: {data}")
    info = {"source": str(data)}
    if (data / "dataset.json").is_file():
        info["dataset_config"] = json.loads((data / "dataset.json").read_text())
        man = data / "manifest.jsonl"
        if man.is_file():
            info["manifest_sha256"] = hashlib.sha256(man.read_bytes()).hexdigest()
        return data / "faces", info
    return data, info


def list_people(root: Path, split: str | None = None, dataset_dir: Path | None = None) -> dict[str, list[Path]]:
    """person -> image paths. With a built dataset and ``split``, only the records of that split."""
    if dataset_dir is not None and split and (dataset_dir / "manifest.jsonl").is_file():
        out: dict[str, list[Path]] = {}
        for line in (dataset_dir / "manifest.jsonl").read_text().splitlines():
            if not line.strip():
                continue
            r = json.loads(line)
            if r.get("status", "kept") != "kept" or r.get("split") != split:
                continue
            crop = r.get("crop") or r.get("face") or r.get("path")
            if crop is None:
                continue
            p = dataset_dir / crop
            if not p.is_file() and (dataset_dir / "faces" / crop).is_file():
                p = dataset_dir / "faces" / crop
            out.setdefault(r["identity"], []).append(p)
        if out:
            return {k: sorted(v) for k, v in sorted(out.items())}
    out = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(f for f in d.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith("."))
        if files:
            out[d.name] = files
    if not out:
        raise UserInputError(f"{root}: no <person>/<image> folders found")
    return out


def load_crops(paths, fraction: float, size: int, desc: str = "loading faces") -> np.ndarray:
    arr = np.empty((len(paths), size, size, 3), np.uint8)
    for i, p in enumerate(tqdm(paths, desc=desc, leave=False, mininterval=2, disable=len(paths) < 200)):
        arr[i] = crop_resize(read_image(p), fraction, size)
    return arr


def load_faceset(data: str | Path, fraction: float, size: int, exclude_people: set[str] = frozenset(),
                 include_people: set[str] | None = None, split: str | None = "train",
                 min_images: int = 1) -> FaceSet:
    root, info = resolve_faces_root(data)
    people = list_people(root, split, Path(data) if root != Path(data) else None)
    people = {k: v for k, v in people.items()
              if k not in exclude_people and (include_people is None or k in include_people) and len(v) >= min_images}
    if not people:
        raise UserInputError(f"{data}: no people left to train on after exclusions")
    names = sorted(people)
    paths, labels = [], []
    for li, n in enumerate(names):
        paths += people[n]
        labels += [li] * len(people[n])
    info.update({"people": len(names), "images": len(paths), "excluded_people": len(exclude_people)})
    return FaceSet(load_crops(paths, fraction, size), np.array(labels, np.int64), names,
                   [str(p.relative_to(root)) if p.is_relative_to(root) else str(p) for p in paths], info)


def load_pair_images(data: str | Path, pairs: PairList, fraction: float, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Crops for the left and right side of every pair (each distinct file read once)."""
    root, _ = resolve_faces_root(data)
    uniq = sorted(set(pairs.left) | set(pairs.right))
    missing = [u for u in uniq if not (root / u).is_file()]
    if missing:
        raise NotFoundError(f"{len(missing)} pair images missing under {root}, e.g. {missing[0]}")
    arr = load_crops([root / u for u in uniq], fraction, size, desc="loading pairs")
    pos = {u: i for i, u in enumerate(uniq)}
    return arr[[pos[a] for a in pairs.left]], arr[[pos[b] for b in pairs.right]]


# ------------------------------------------------------------------------------------------- augmentation


def augment_batch(imgs: np.ndarray, out_size: int, rng: np.random.Generator, *, flip: bool = True,
                  crop: bool = True, color: bool = True, scale: float = 0.1) -> np.ndarray:
    """Random crop (with a little scale jitter), horizontal flip and brightness/contrast/greyscale jitter.
    ``imgs`` are the larger training crops (N, S, S, 3); returns (N, out_size, out_size, 3) uint8."""
    n, s = imgs.shape[0], imgs.shape[1]
    out = np.empty((n, out_size, out_size, 3), np.uint8)
    for i in range(n):
        img = imgs[i]
        if crop:
            side = int(round(out_size * rng.uniform(1 - scale, 1 + scale)))
            side = min(max(8, side), s)
            y0 = int(rng.integers(0, s - side + 1))
            x0 = int(rng.integers(0, s - side + 1))
        else:
            side = out_size
            y0 = x0 = (s - side) // 2
        patch = img[y0:y0 + side, x0:x0 + side]
        if side != out_size:
            patch = cv2.resize(patch, (out_size, out_size), interpolation=cv2.INTER_LINEAR)
        if flip and rng.random() < 0.5:
            patch = patch[:, ::-1]
        if color:
            f = patch.astype(np.float32)
            if rng.random() < 0.2:
                f[:] = f.mean(axis=2, keepdims=True)
            f = (f - 127.5) * rng.uniform(0.7, 1.3) + 127.5 + rng.uniform(-25, 25)
            patch = np.clip(f, 0, 255).astype(np.uint8)
        out[i] = patch
    return out


def center_batch(imgs: np.ndarray, out_size: int) -> np.ndarray:
    s = imgs.shape[1]
    o = (s - out_size) // 2
    return imgs[:, o:o + out_size, o:o + out_size]
