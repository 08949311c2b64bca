"""The artifact store: one directory (a volume in a cluster) holding datasets, models, galleries and reports.

Layout::

    <root>/<kind>/<name>/<version>/...   an immutable version (kind: datasets, models, galleries, reports)
    <root>/<kind>/<name>/CURRENT         the version readers use, switched in one atomic rename

``<root>/triton`` is a Triton model repository (``tritonserver --model-repository <root>/triton``): its
``<name>/<version>/`` folders are exported embedders (``iznet export``, see :mod:`iznet.triton.repository`);
Triton ignores the hidden staging folders and the ``CURRENT`` file.

Writers stage a version in a hidden folder and :meth:`ArtifactStore.publish` renames it into place, then
points ``CURRENT`` at it. A crash before the rename leaves only a stray staging folder; a crash between the
rename and ``CURRENT`` leaves the previous version current. Readers never see half a version.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

from iznet.errors import NotFoundError, UserInputError

KINDS = ("datasets", "models", "galleries", "reports", "triton")


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write a file so that readers see the old content or the new, never a mix (temp file + fsync + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's content, read in 1 MiB chunks: the digest that names a model's weights."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_name(name: str) -> str:
    if not name or name.startswith(".") or "/" in name or "\\" in name or name in {"CURRENT"}:
        raise UserInputError(f"bad artifact name {name!r}: use letters, digits, '-', '_' or '.'")
    return name


class ArtifactStore:
    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).expanduser()

    def dir(self, kind: str, name: str) -> Path:
        if kind not in KINDS:
            raise ValueError(f"unknown artifact kind {kind!r}")
        return self.root / kind / _check_name(name)

    def versions(self, kind: str, name: str) -> list[int]:
        base = self.dir(kind, name)
        if not base.is_dir():
            return []
        return sorted(int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit())

    def stage(self, kind: str, name: str) -> Path:
        """A fresh hidden folder to write a new version into; pass it to :meth:`publish` when complete."""
        staging = self.dir(kind, name) / f".staging-{uuid.uuid4().hex[:12]}"
        staging.mkdir(parents=True)
        return staging

    def publish(self, kind: str, name: str, staged: Path, make_current: bool = True) -> int:
        """Move a staged folder into place as the next version; optionally make it current. Returns it."""
        base = self.dir(kind, name)
        while True:
            version = max(self.versions(kind, name), default=0) + 1
            try:
                os.rename(staged, base / str(version))  # fails if another writer took the number
                break
            except OSError:
                if not (base / str(version)).exists():
                    raise
        if make_current:
            self.set_current(kind, name, version)
        return version

    def set_current(self, kind: str, name: str, version: int) -> None:
        if not (self.dir(kind, name) / str(version)).is_dir():
            raise NotFoundError(f"{kind}/{name} has no version {version}")
        atomic_write_text(self.dir(kind, name) / "CURRENT", f"{version}\n")

    def current_version(self, kind: str, name: str) -> int:
        marker = self.dir(kind, name) / "CURRENT"
        try:
            return int(marker.read_text().strip())
        except FileNotFoundError:
            raise NotFoundError(f"{kind}/{name} not found in the store at {self.root}") from None

    def current(self, kind: str, name: str) -> Path:
        """The folder of the current version."""
        return self.dir(kind, name) / str(self.current_version(kind, name))

    def names(self, kind: str) -> list[str]:
        base = self.root / kind
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if p.is_dir() and (p / "CURRENT").exists())

    def discard_staging(self, kind: str, name: str) -> int:
        """Remove stray staging folders left by crashed writers; returns how many."""
        base = self.dir(kind, name)
        stray = [p for p in base.glob(".staging-*") if p.is_dir()] if base.is_dir() else []
        for p in stray:
            shutil.rmtree(p, ignore_errors=True)
        return len(stray)
