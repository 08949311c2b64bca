"""``make bench``: run every side-by-side benchmark in turn and say where each wrote its numbers.

Each benchmark compares against its baseline in one run and prints its own table (see its --help for the
full-size settings); this runner uses sizes that finish in minutes on two cores. Gathering their numbers into
one JSON + markdown table with the machine described is issue 11's work.
"""

from __future__ import annotations

import platform
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"

BENCHES: list[tuple[str, list[str]]] = [
    ("embedding_backends", ["--rounds", "2"]),                       # torch vs onnx vs triton, batch 1 and 32
    ("gallery_index", ["--sizes", "1000,10000,50000", "--queries", "200"]),  # exact vs approximate search
    ("detection_speed", ["--repeats", "3"]),                         # trained detector vs the teachers
    ("analysis_speed", ["--faces", "1000"]),                         # t-SNE at the study's and quick settings
    ("reindex", ["--exemplars", "2000"]),                            # re-index as a job vs in-process
    ("gateway_vs_local", ["--repeats", "10"]),                       # Label through the gateway vs in-process
]


def main() -> int:
    RESULTS.mkdir(parents=True, exist_ok=True)
    lines = [f"# make bench, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
             f"machine: {platform.machine()}, {platform.system()} {platform.release()}, Python {platform.python_version()}", ""]
    failed = 0
    for name, args in BENCHES:
        print(f"\n=== bench.{name} {' '.join(args)}", flush=True)
        start = time.perf_counter()
        code = subprocess.call([sys.executable, "-m", f"bench.{name}", *args])
        took = time.perf_counter() - start
        failed += code != 0
        lines.append(f"- bench.{name} {' '.join(args)}: {'ok' if code == 0 else f'FAILED (exit {code})'} in {took:.0f} s")
    (RESULTS / "run.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
