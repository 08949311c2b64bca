"""Shared fixtures. Tests that need the team's real photos use ``shared_data`` and skip, with the reason,
on a machine that does not have ``../shared/data``; every test that uses it (directly or through another
fixture) is marked ``shared_data``, so ``make test-fast`` (``-m "not slow and not shared_data"``) leaves it out."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from iznet.config import shared_data_dir


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "shared_data" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.shared_data)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = shared_data_dir()
    if not (root / "README.md").is_file():
        pytest.skip(f"needs the shared face photos at {root} (../shared/data beside the checkout, or "
                    "$IZNET_SHARED_DATA); not on this machine")
    return root


def copy_people(src_root: Path, dst_root: Path, people: dict[str, int]) -> list[Path]:
    """Copy the first ``n`` photos of each person into ``dst_root/<person>/`` (tests work on their own copy)."""
    copied = []
    for person, n in people.items():
        (dst_root / person).mkdir(parents=True, exist_ok=True)
        for f in sorted((src_root / person).iterdir())[:n]:
            shutil.copy2(f, dst_root / person / f.name)
            copied.append(dst_root / person / f.name)
    return copied
