"""What the analysis reads: faces chosen from a dataset or a folder of people, embeddings made by a model,
embeddings saved as ``.npz``, and verification pairs mapped onto the analysed faces.

``.npz`` layout (``save_embeddings`` / ``load_embeddings``): ``embeddings`` (N, D) float32, ``labels`` (N,) str,
optionally ``paths`` (N,) str and ``card`` (a JSON string: the model card).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from iznet.errors import ImageError, NotFoundError, UserInputError

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".pgm", ".bmp", ".webp", ".tif", ".tiff"}
_NUMBER = re.compile(r"_(\d+)$")


@dataclass(frozen=True)
class Face:
    identity: str
    path: Path


def _folder_faces(root: Path) -> list[Face]:
    faces = []
    for person in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        faces += [Face(person.name, f) for f in sorted(person.iterdir())
                  if f.is_file() and f.suffix.lower() in IMAGE_EXTS]
    return faces


def list_faces(data: str | Path, split: str | None = None) -> tuple[list[Face], str]:
    """Faces of a dataset built by ``iznet data build`` (optionally one split), or of a folder with one
    sub-folder of images per person. Returns the faces and what kind of source it was."""
    root = Path(data)
    if not root.is_dir():
        raise NotFoundError(f"{root}: no such folder (give a dataset from `iznet data build` or a folder of "
                            "one sub-folder of face images per person)")
    if (root / "dataset.json").is_file():
        from iznet.data.dataset import FaceDataset

        ds = FaceDataset(root)
        return [Face(r.identity, r.path) for r in ds.faces(split)], "dataset"
    if split is not None:
        raise UserInputError(f"{root} is a plain folder of people, not a built dataset: it has no splits "
                             "(drop --split)")
    faces = _folder_faces(root)
    if not faces:
        raise NotFoundError(f"{root}: no images in sub-folders (expected {root}/<person>/<image>)")
    return faces, "folder"


def choose_rows(labels, top: int | None = None, names: list[str] | None = None,
                max_per_person: int | None = None, min_faces: int = 2, seed: int = 0) -> np.ndarray:
    """Rows to keep: the named people, or the ``top`` people with the most faces (ties by name), each with at
    least ``min_faces``; at most ``max_per_person`` rows each (a seeded random choice). Sorted by person."""
    labels = [str(v) for v in labels]
    by: dict[str, list[int]] = {}
    for k, lab in enumerate(labels):
        by.setdefault(lab, []).append(k)
    if names:
        missing = [n for n in names if n not in by]
        if missing:
            raise NotFoundError(f"no faces of {', '.join(missing)} in the data ({len(by)} people there)")
        chosen = list(dict.fromkeys(names))
    else:
        ranked = sorted((p for p in by if len(by[p]) >= min_faces), key=lambda p: (-len(by[p]), p))
        chosen = ranked[:top] if top else ranked
    if not chosen:
        raise UserInputError(f"no person has at least {min_faces} faces")
    rng = np.random.default_rng(seed)
    out: list[int] = []
    for p in sorted(chosen):
        rows = by[p]
        if max_per_person and len(rows) > max_per_person:
            rows = [rows[k] for k in sorted(rng.choice(len(rows), max_per_person, replace=False))]
        out += rows
    return np.asarray(out, np.int64)


def choose_people(faces: list[Face], top: int | None = None, names: list[str] | None = None,
                  max_per_person: int | None = None, min_faces: int = 2, seed: int = 0) -> list[Face]:
    """:func:`choose_rows` on faces."""
    rows = choose_rows([f.identity for f in faces], top, names, max_per_person, min_faces, seed)
    return [faces[k] for k in rows]


def load_model(path: str | Path, threads: int = 1):
    """The trained embedder at ``path`` (:func:`iznet.embedding.load_embedder`)."""
    from iznet.embedding import load_embedder

    return load_embedder(path, threads=threads)


def model_card(embedder: Any) -> dict[str, Any]:
    """The embedder's model card (``.card``), else its ``.version`` dict, plus its input size."""
    card = getattr(embedder, "card", None)
    card = dict(card) if isinstance(card, dict) else {"version": dict(getattr(embedder, "version", {}) or {})}
    if "input_size" not in card and hasattr(embedder, "input_size"):
        card["input_size"] = embedder.input_size
    return card


def embed_faces(embedder: Any, faces: list[Face], batch_size: int = 64, progress: bool = True,
                ) -> tuple[np.ndarray, list[Face], list[tuple[Face, str]]]:
    """Embed the faces in batches. Unreadable images are skipped and returned with the reason."""
    from tqdm import tqdm

    from iznet.imageio import read_image

    vecs, kept, skipped = [], [], []
    bar = tqdm(total=len(faces), desc="embedding faces", unit="face", disable=not progress)
    for start in range(0, len(faces), batch_size):
        crops, batch = [], []
        for f in faces[start:start + batch_size]:
            try:
                crops.append(read_image(f.path))
                batch.append(f)
            except ImageError as exc:
                skipped.append((f, str(exc)))
        if crops:
            vecs.append(np.asarray(embedder.embed(crops), np.float32))
            kept += batch
        bar.update(len(faces[start:start + batch_size]))
    bar.close()
    if not kept:
        raise UserInputError("no face could be read and embedded")
    return np.concatenate(vecs), kept, skipped


def save_embeddings(path: str | Path, embeddings: np.ndarray, labels, paths=None,
                    card: dict[str, Any] | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, Any] = {"embeddings": np.asarray(embeddings, np.float32), "labels": np.asarray(labels, str)}
    if paths is not None:
        arrays["paths"] = np.asarray([str(p) for p in paths], str)
    if card is not None:
        arrays["card"] = np.asarray(json.dumps(card, default=str))
    np.savez_compressed(path, **arrays)
    return path


def load_embeddings(path: str | Path) -> tuple[np.ndarray, np.ndarray, list[str] | None, dict[str, Any] | None]:
    """(embeddings, labels, paths or None, card or None) from an ``.npz``; a bad file is the user's error."""
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"{path}: no such embeddings file")
    try:
        with np.load(path, allow_pickle=False) as z:
            emb, labels = np.asarray(z["embeddings"], np.float32), np.asarray(z["labels"]).astype(str)
            paths = z["paths"].astype(str).tolist() if "paths" in z.files else None
            card = json.loads(str(z["card"])) if "card" in z.files else None
    except KeyError as exc:
        raise UserInputError(f"{path}: an embeddings file needs arrays 'embeddings' and 'labels' (missing {exc})") from None
    except (ValueError, OSError, json.JSONDecodeError) as exc:
        raise UserInputError(f"{path}: not a readable .npz of embeddings ({exc})") from None
    if emb.ndim != 2 or len(emb) != len(labels):
        raise UserInputError(f"{path}: embeddings {emb.shape} and labels ({len(labels)}) do not match")
    return emb, labels, paths, card


def face_key(identity: str, path: str | Path) -> tuple[str, int] | None:
    """(identity, number) of an LFW-style file name ``<identity>_NNNN.<ext>``, else None."""
    m = _NUMBER.search(Path(path).stem)
    return (identity, int(m.group(1))) if m else None


def map_pairs(pairs_file: str | Path, labels, paths, min_pairs: int = 20,
              note: Callable[[str], None] | None = None) -> list[tuple[int, int, int]] | None:
    """The LFW-format pairs whose two faces are both among the analysed ones, as (row, row, fold); None
    (with a note) when fewer than ``min_pairs`` same-person or different-person pairs are usable."""
    from iznet.data.pairs import read_pairs

    rows = {}
    for k, (lab, p) in enumerate(zip(labels, paths)):
        key = face_key(str(lab), p)
        if key is not None:
            rows.setdefault(key, k)
    pf = read_pairs(pairs_file)
    out = []
    for pr in pf.pairs:
        a, b = rows.get((pr.name1, pr.index1)), rows.get((pr.name2, pr.index2))
        if a is not None and b is not None:
            out.append((a, b, pr.fold))
    same = sum(1 for a, b, _ in out if labels[a] == labels[b])
    if same < min_pairs or len(out) - same < min_pairs:
        if note:
            note(f"{pairs_file}: only {same} same-person and {len(out) - same} different-person pairs fall among "
                 f"the analysed faces (fewer than {min_pairs}); using all pairs of the analysed faces instead")
        return None
    return out
