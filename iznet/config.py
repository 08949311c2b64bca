"""Configuration from environment variables with typed defaults.

Every knob here can also be given as a CLI flag; the flag wins. Names are ``IZNET_<FIELD>`` in upper case,
e.g. ``IZNET_STORE=/data/iznet``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

ENV_PREFIX = "IZNET_"


def _repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def shared_data_dir() -> Path:
    """Where the team's real photos live: ``$IZNET_SHARED_DATA`` or ``../shared/data`` beside the checkout."""
    env = os.environ.get(ENV_PREFIX + "SHARED_DATA")
    return Path(env) if env else _repo_root().parent / "shared" / "data"


def cache_dir() -> Path:
    """Where derived files (onnx exports of the models) are kept: ``$IZNET_CACHE`` or ``~/.cache/iznet``."""
    return Path(os.environ.get(ENV_PREFIX + "CACHE") or Path.home() / ".cache" / "iznet")


@dataclass(frozen=True)
class Settings:
    #: The artifact store: datasets, models, galleries, reports (a directory locally, a volume in a cluster).
    store: Path = field(default_factory=lambda: Path.home() / ".iznet")
    #: Images larger than this many pixels are refused before they are decoded.
    max_image_pixels: int = 64_000_000
    #: Encoded images larger than this many bytes are refused.
    max_image_bytes: int = 64 * 1024 * 1024
    #: Worker processes for CPU-bound batch work (dataset building); 0 means one per core.
    workers: int = 0
    #: Seed for every random choice that must be reproducible.
    seed: int = 0


def _parse(value: str, kind: Any) -> Any:
    if kind is bool:
        return value.strip().lower() in {"1", "true", "yes", "on"}
    if kind is Path:
        return Path(value).expanduser()
    return kind(value)


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, then ``overrides`` (CLI flags) on top; ``None`` overrides are ignored."""
    hints = get_type_hints(Settings)
    values: dict[str, Any] = {}
    for f in fields(Settings):
        raw = os.environ.get(ENV_PREFIX + f.name.upper())
        if raw is not None and raw != "":
            try:
                values[f.name] = _parse(raw, hints[f.name])
            except ValueError as exc:
                from iznet.errors import UserInputError

                raise UserInputError(f"{ENV_PREFIX}{f.name.upper()}={raw!r}: {exc}") from None
    values.update({k: v for k, v in overrides.items() if v is not None})
    return dataclasses.replace(Settings(), **values)
