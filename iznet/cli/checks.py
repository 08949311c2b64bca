"""Checks the commands make before any expensive work: the store and output folders are usable, numbers are
finite and in range. Each problem is one :class:`~iznet.errors.UserInputError` (``error: ...``, exit 2)."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import click

from iznet.errors import UserInputError


class FiniteRange(click.FloatRange):
    """click's FloatRange, which lets NaN through (every comparison with NaN is false); this one does not."""

    def convert(self, value, param, ctx):
        rv = super().convert(value, param, ctx)
        if rv is not None and not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return rv


#: A similarity threshold: (0, 1] (0 would mean "the calibrated one" on the wire; say it by leaving it out).
THRESHOLD = FiniteRange(0, 1, min_open=True)
#: A detector score or a probability in [0, 1].
SCORE = FiniteRange(0, 1)
#: A target false-accept rate, strictly between 0 and 1.
RATE = FiniteRange(0, 1, min_open=True, max_open=True)


def _why(exc: OSError) -> str:
    return exc.strerror or exc.__class__.__name__


def writable_dir(path: Path, what: str) -> Path:
    """``path`` is (or is now created as) a folder this process can write into."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise UserInputError(f"{what} {path}: not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserInputError(f"{what} {path}: cannot create it ({_why(exc)})") from None
    try:
        fd, probe = tempfile.mkstemp(prefix=".iznet-probe-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UserInputError(f"{what} {path}: not writable ({_why(exc)})") from None
    return path


def _blocked_by(path: Path) -> Path | None:
    """The nearest existing ancestor of a missing ``path`` when it is not a folder (so nothing can be made)."""
    for parent in path.parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def readable_store(root: Path) -> Path:
    """A store to read from: absent (then it holds nothing) or a readable folder whose ``galleries`` is one."""
    root = Path(root).expanduser()
    if root.exists() and not root.is_dir():
        raise UserInputError(f"store {root}: not a directory")
    blocked = None if root.exists() else _blocked_by(root)
    if blocked is not None:
        raise UserInputError(f"store {root}: cannot be a directory ({blocked} is a file)")
    for folder in (root, root / "galleries"):
        if folder.exists():
            if not folder.is_dir():
                raise UserInputError(f"store {root}: {folder.name} is not a directory")
            try:
                os.listdir(folder)
            except OSError as exc:
                raise UserInputError(f"store {root}: cannot read {folder} ({_why(exc)})") from None
    return root


def writable_store(root: Path) -> Path:
    """A store to write galleries into: created if need be, writable, its ``galleries`` folder too."""
    root = writable_dir(root, "store")
    readable_store(root)
    if (root / "galleries").exists():
        writable_dir(root / "galleries", "store galleries folder")
    return root
