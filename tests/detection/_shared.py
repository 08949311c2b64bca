from __future__ import annotations

import pytest

from iznet.config import shared_data_dir


def shared_or_skip(*parts: str):
    path = shared_data_dir().joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs ../shared/data ({path} is absent; set IZNET_SHARED_DATA)")
    return path
