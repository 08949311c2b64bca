"""Generate the Python gRPC code for ``protos/iznet/v1`` into ``iznet/v1`` (``make protos``).

The proto package ``iznet.v1`` lands as the Python package ``iznet.v1``, so generated imports
(``from iznet.v1 import common_pb2``) resolve inside this project without rewriting.
Run as ``python -m iznet.protos_build [OUT_DIR]``; a test builds into a temporary folder and compares,
so checked-in code that is stale fails the tests.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
PROTO_DIR = PROTO_ROOT / "iznet" / "v1"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def proto_files() -> list[Path]:
    return sorted(PROTO_DIR.glob("*.proto"))


def build(out_root: Path = ROOT) -> list[Path]:
    """Compile every proto into ``out_root/iznet/v1``; returns the files written."""
    import grpc_tools
    from grpc_tools import protoc

    out_root = Path(out_root)
    target = out_root / "iznet" / "v1"
    target.mkdir(parents=True, exist_ok=True)
    for old in target.iterdir():
        if old.name.endswith(GENERATED_SUFFIXES):
            old.unlink()
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *[str(p.relative_to(PROTO_ROOT)) for p in proto_files()],
    ]
    # protoc resolves relative proto paths against the working directory's -I roots; give absolute roots.
    code = protoc.main(args)
    if code != 0:
        raise RuntimeError(f"protoc failed with exit code {code}")
    init = target / "__init__.py"
    if not init.exists():
        init.write_text('"""Generated gRPC code for the iznet.v1 contracts (make protos). Do not edit."""\n')
    return sorted(p for p in target.iterdir() if p.name.endswith(GENERATED_SUFFIXES))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0]) if argv else ROOT
    written = build(out)
    print(f"generated {len(written)} files into {out / 'iznet' / 'v1'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
