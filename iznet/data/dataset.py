"""Reading a face dataset made by ``iznet data build``: the one reader trainers and evaluators use."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from iznet.data.builder import FORMAT, INFO, MANIFEST, SPLITS, load_manifest
from iznet.data.pairs import PairsFile, read_pairs
from iznet.errors import NotFoundError, UserInputError
from iznet.imageio import read_image


@dataclass(frozen=True)
class FaceRecord:
    identity: str
    number: int
    split: str
    path: Path
    source: str


class FaceDataset:
    """The kept faces of a built dataset, by split and identity, with its pairs files.

    ``FaceDataset(root).faces("train")`` lists the training faces; ``.pairs("dev")`` parses the dev pairs
    (resolve them with ``pair.paths(dataset.faces_dir)``).
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        info = self.root / INFO
        if not info.is_file():
            raise NotFoundError(f"{self.root}: not a face dataset (no {INFO}); build one with `iznet data build`")
        self.info: dict[str, Any] = json.loads(info.read_text())
        if self.info.get("format") != FORMAT:
            raise UserInputError(f"{self.root}: unknown dataset format {self.info.get('format')!r} (expected {FORMAT})")
        self.manifest = load_manifest(self.root)
        self.records = [
            FaceRecord(r["identity"], r["number"], r["split"], self.root / r["face"], r["source"])
            for r in self.manifest
            if r["status"] == "kept"
        ]

    @property
    def config(self) -> dict[str, Any]:
        return self.info["config"]

    @property
    def faces_dir(self) -> Path:
        return self.root / "faces"

    def faces(self, split: str | None = None) -> list[FaceRecord]:
        if split is not None and split not in SPLITS:
            raise UserInputError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")
        return [r for r in self.records if split is None or r.split == split]

    def identities(self, split: str | None = None) -> list[str]:
        return sorted({r.identity for r in self.faces(split)})

    def pairs_path(self, split: str) -> Path:
        return self.root / f"pairs_{split}.txt"

    def pairs(self, split: str) -> PairsFile:
        path = self.pairs_path(split)
        if not path.is_file():
            note = self.info.get("pairs", {}).get(split, {}).get("note", "")
            raise NotFoundError(f"{self.root} has no {split} pairs" + (f": {note}" if note else ""))
        return read_pairs(path)

    def load(self, record: FaceRecord) -> np.ndarray:
        return read_image(record.path)

    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        return f"FaceDataset({str(self.root)!r}, faces={len(self)}, identities={len(self.identities())})"
