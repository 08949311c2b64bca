"""Verification pairs in the LFW ``pairs.txt`` format.

The file starts with ``<folds>\\t<n>``; then, for each fold, ``n`` same-person lines ``name\\ti\\tj`` followed by
``n`` different-person lines ``name1\\ti\\tname2\\tj``, where ``i`` names the image ``name/name_%04d.jpg``.
Folds are identity-disjoint, so k-fold evaluation never tunes on the people it tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from iznet.errors import NotFoundError, UserInputError


@dataclass(frozen=True)
class Pair:
    name1: str
    index1: int
    name2: str
    index2: int
    fold: int

    @property
    def same(self) -> bool:
        return self.name1 == self.name2

    def paths(self, root: str | Path, ext: str = ".jpg") -> tuple[Path, Path]:
        """The two images under ``root`` (a folder of ``name/name_%04d.jpg``)."""
        return image_path(root, self.name1, self.index1, ext), image_path(root, self.name2, self.index2, ext)


def image_name(name: str, index: int, ext: str = ".jpg") -> str:
    return f"{name}_{index:04d}{ext}"


def image_path(root: str | Path, name: str, index: int, ext: str = ".jpg") -> Path:
    return Path(root) / name / image_name(name, index, ext)


@dataclass
class PairsFile:
    folds: int
    per_fold: int
    pairs: list[Pair]

    def fold(self, k: int) -> list[Pair]:
        return [p for p in self.pairs if p.fold == k]

    def people(self, fold: int | None = None) -> set[str]:
        ps = self.pairs if fold is None else self.fold(fold)
        return {p.name1 for p in ps} | {p.name2 for p in ps}


def read_pairs(path: str | Path) -> PairsFile:
    """Parse an LFW-format pairs file; a malformed file raises with the line that is wrong."""
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"{path}: no such pairs file")
    lines = [ln.rstrip("\n") for ln in path.read_text().splitlines() if ln.strip()]
    if not lines:
        raise UserInputError(f"{path}: empty pairs file")
    try:
        head = lines[0].split()
        folds, per_fold = (int(head[0]), int(head[1])) if len(head) == 2 else (1, int(head[0]))
    except (ValueError, IndexError):
        raise UserInputError(f"{path}:1: expected '<folds>\\t<pairs per fold>', got {lines[0]!r}") from None
    body = lines[1:]
    if len(body) != folds * 2 * per_fold:
        raise UserInputError(f"{path}: header says {folds} folds x {2 * per_fold} pairs, file has {len(body)} lines")
    pairs = []
    for n, line in enumerate(body):
        fold = n // (2 * per_fold)
        parts = line.split()
        try:
            if len(parts) == 3:
                pairs.append(Pair(parts[0], int(parts[1]), parts[0], int(parts[2]), fold))
            elif len(parts) == 4:
                pairs.append(Pair(parts[0], int(parts[1]), parts[2], int(parts[3]), fold))
            else:
                raise ValueError
        except ValueError:
            raise UserInputError(f"{path}:{n + 2}: not a pair line: {line!r}") from None
    return PairsFile(folds, per_fold, pairs)


def write_pairs(path: str | Path, folds: list[tuple[list[Pair], list[Pair]]]) -> None:
    """Write folds of (same, different) pairs; every fold must have the same number of each."""
    from iznet.store import atomic_write_text

    if not folds:
        raise ValueError("no folds to write")
    n = len(folds[0][0])
    if any(len(s) != n or len(d) != n for s, d in folds):
        raise ValueError("every fold needs the same number of same and different pairs")
    out = [f"{len(folds)}\t{n}"]
    for same, diff in folds:
        out += [f"{p.name1}\t{p.index1}\t{p.index2}" for p in same]
        out += [f"{p.name1}\t{p.index1}\t{p.name2}\t{p.index2}" for p in diff]
    atomic_write_text(path, "\n".join(out) + "\n")
