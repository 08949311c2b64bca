"""Face crops for training and evaluation, held in memory as uint8 arrays.

Sources:
* a folder with one sub-folder per person (``<root>/<person>/*.jpg``; e.g. ``att_orl`` or raw LFW), or
* a dataset built by ``iznet data build`` (``dataset.json`` + ``faces/``; by default its
  ``train`` split; ``split='all'`` takes every kept face, e.g. LFW, whose held-out people come from a pairs file).

LFW-format pairs files (read with ``iznet.data.pairs.read_pairs``) name people to hold out: with
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
    """Read an LFW ``pairs.txt`` with the dataset builder's parser (:func:`iznet.data.pairs.read_pairs`).
    Folds are numbered from 1 here, as LFW's documentation numbers them."""
    from iznet.data.pairs import image_name, read_pairs

    pf = read_pairs(path)
    left = [f"{p.name1}/{image_name(p.name1, p.index1)}" for p in pf.pairs]
    right = [f"{p.name2}/{image_name(p.name2, p.index2)}" for p in pf.pairs]
    return PairList(left, right, np.array([p.same for p in pf.pairs], bool),
                    np.array([p.fold + 1 for p in pf.pairs], np.int64))


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
        info["dataset_config"] = json.loads((data / "dataset.json").read_text()).get("config")
        man = data / "manifest.jsonl"
        if man.is_file():
            info["manifest_sha256"] = hashlib.sha256(man.read_bytes()).hexdigest()
        return data / "faces", info
    return data, info


def list_people(root: Path, split: str | None = None, dataset_dir: Path | None = None) -> dict[str, list[Path]]:
    """person -> image paths. With a built dataset and a ``split`` (train/dev/test), only that split's faces;
    ``split`` None or "all" takes every image under ``root``."""
    if dataset_dir is not None and split not in (None, "", "all"):
        from iznet.data.dataset import FaceDataset

        out: dict[str, list[Path]] = {}
        for r in FaceDataset(dataset_dir).faces(split):
            out.setdefault(r.identity, []).append(r.path)
        if not out:
            raise UserInputError(f"{dataset_dir}: no faces in split {split!r}")
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
    found = {u: _same_stem(root / u) for u in uniq}
    missing = [u for u, f in found.items() if f is None]
    if missing:
        raise NotFoundError(f"{len(missing)} pair images missing under {root}, e.g. {missing[0]}")
    arr = load_crops([found[u] for u in uniq], fraction, size, desc="loading pairs")
    pos = {u: i for i, u in enumerate(uniq)}
    return arr[[pos[a] for a in pairs.left]], arr[[pos[b] for b in pairs.right]]


def _same_stem(path: Path) -> Path | None:
    """``path`` itself, or the image with its stem and another suffix (chips folders hold PNGs of JPEGs)."""
    if path.is_file():
        return path
    for suffix in IMAGE_SUFFIXES:
        if path.with_suffix(suffix).is_file():
            return path.with_suffix(suffix)
    return None


# ------------------------------------------------------------------------------------------- augmentation


def augment_batch(imgs: np.ndarray, out_size: int, rng: np.random.Generator, *, flip: bool = True,
                  crop: bool = True, color: bool = True, scale: float = 0.1, blur: float = 0.0,
                  flips: np.ndarray | None = None) -> np.ndarray:
    """Random crop (with a little scale jitter), horizontal flip, brightness/contrast/greyscale jitter and,
    with chance ``blur``, a Gaussian blur (sigma 0.5-1.5 px: the soft faces of group photos).
    ``imgs`` are the larger training crops (N, S, S, 3); returns (N, out_size, out_size, 3) uint8.
    ``flips``, when given, is filled with which images were mirrored."""
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
            if flips is not None:
                flips[i] = True
        if blur and rng.random() < blur:
            patch = cv2.GaussianBlur(np.ascontiguousarray(patch), (0, 0), float(rng.uniform(0.5, 1.5)))
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
