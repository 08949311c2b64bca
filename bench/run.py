"""``make bench``: run every side-by-side benchmark, each in its own process, and gather their results into one
JSON file and one markdown report with the machine described.

    python -m bench.run [--quick] [--out-dir bench/results] [--only NAME,...] [--detector PATH] [--embedder DIR]
                        [--extra 'NAME:ARGS' ...]

Each benchmark writes its result with ``--json`` (the format is in bench/common.py); one that fails (a crash,
a timeout) is reported as failed with the end of its output and the others go on; one that cannot run here
says "skipped: <reason>". Output, in ``--out-dir``:

    bench.json         everything: the machine, the command, every benchmark's rows and comparisons
    bench.md           the same as markdown: machine, a summary table of all ratios, one table per benchmark
    <name>.json        each benchmark's own result;  logs/<name>.log  its console output

The default sizes take roughly 20-30 minutes on two quiet cores; ``--quick`` uses tiny sizes (about a minute
or two, for the test) and its numbers mean nothing. Benchmarks share the machine with nothing else of ours:
run it on a quiet machine and compare numbers within one report, not across reports.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import comparison_rows, markdown_table, now_utc, render_result
from bench.machine import describe, load_average

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


@dataclass
class Bench:
    name: str
    what: str
    full: list[str]       # the sizes `make bench` uses
    quick: list[str]      # tiny sizes for --quick (the test)
    timeout_s: int        # at full size; --quick allows 300 s each


def benches(shared: Path) -> list[Bench]:
    att = str(shared / "att_orl")
    return [
        Bench("gateway_vs_local", "Label through the gateway vs in-process, 1 and 4 clients",
              ["--repeats", "50", "--clients", "1,4"], ["--repeats", "3", "--clients", "1,2"], 900),
        Bench("gallery_index", "gallery search 1k..1M vectors: exact vs IVF (and HNSW up to 10k)",
              ["--sizes", "1000,10000,100000,1000000", "--queries", "300", "--hnsw-max", "10000"],
              ["--sizes", "1000,4000", "--queries", "30", "--hnsw-max", "1000"], 2400),
        Bench("embedding_backends", "embeddings/s by backend (torch, onnx, triton) and batch (1, 8, 32)",
              ["--batches", "1,8,32", "--rounds", "3", "--seconds", "2"],
              ["--batches", "1,8", "--rounds", "1", "--seconds", "0.2"], 900),
        Bench("dlib_embedder_speed", "dlib's ResNet: dlib itself vs the torch port vs onnxruntime, ms per face",
              ["--batches", "1,32"], ["--batches", "1,2", "--rounds", "1", "--seconds", "0.2"], 600),
        Bench("shape_predictor_speed", "dlib's 5-point landmarks: dlib vs the NumPy port, ms per face",
              [], ["--repeats", "1", "--rounds", "1"], 300),
        Bench("detection_speed", "trained detector and MTCNN vs the teachers, ms per image",
              ["--repeats", "10", "--rounds", "3"], ["--repeats", "1", "--rounds", "1"], 600),
        Bench("peer_face_recognition", "IZ*Net vs face_recognition (dlib-bin, no BLAS): ms/photo, photos/s, named-face F1",
              ["--scenes", "40", "--rounds", "1"], ["--scenes", "2", "--people", "3", "--enroll-photos", "2"], 1200),
        Bench("mtcnn_speed", "MTCNN per 640x480 photo: torch (reference) vs onnxruntime (default)",
              ["--rounds", "3", "--photos", "16"], ["--rounds", "1", "--photos", "2"], 600),
        Bench("sampler_speed", "triplet draws/s: Fenwick tree vs the study's Algorithm 1",
              ["--classes", "100,10000,100000", "--seconds", "2", "--rounds", "3"],
              ["--classes", "100,1000", "--seconds", "0.1", "--rounds", "1"], 600),
        Bench("analysis_speed", "analysis with the study's t-SNE settings vs faster ones",
              ["--faces", "1000"], ["--faces", "150", "--settings", "150:250", "30:250"], 900),
        Bench("reindex", "gallery re-index as a Celery job vs in-process",
              ["--exemplars", "2000"], ["--exemplars", "60"], 600),
        Bench("gallery_rules", "decision rules (nearest, k-NN, centroid) on AT&T faces",
              ["--folder", att], ["--folder", att, "--per-person", "3", "--exemplars", "2", "--repeats", "2"], 600),
    ]


def run_one(b: Bench, args: list[str], out_dir: Path, timeout: float) -> dict[str, Any]:
    """Run one benchmark in its own process group; its result, or a failed one saying why."""
    json_path, log_path = out_dir / f"{b.name}.json", out_dir / "logs" / f"{b.name}.log"
    json_path.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", f"bench.{b.name}", *args, "--json", str(json_path)]
    shown = f"python -m bench.{b.name} {shlex.join(args)}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    print(f"\n=== {shown}", flush=True)
    start = time.perf_counter()
    tail: list[str] = []
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)

        def pump() -> None:  # console + log, and keep the end for the report
            for line in proc.stdout:
                sys.stdout.write(line)
                log.write(line)
                tail[:] = (tail + [line.rstrip()])[-15:]

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            code = proc.wait(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out, code = True, None
            stop_group(proc)
        reader.join(timeout=10)
    took = time.perf_counter() - start
    base = {"bench": b.name, "title": b.what, "command": shown, "seconds": round(took, 1), "log": str(log_path)}
    if timed_out:
        return base | {"status": "failed", "reason": f"timed out after {timeout:.0f} s", "tail": tail}
    if code != 0:
        last = next((t for t in reversed(tail) if t.strip()), "")
        return base | {"status": "failed", "reason": f"exit {code}: {last}", "tail": tail}
    try:
        result = json.loads(json_path.read_text())
    except (OSError, ValueError) as e:
        return base | {"status": "failed", "reason": f"no result written ({e})", "tail": tail}
    return result | {k: v for k, v in base.items() if k != "title"}


def stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM the benchmark's process group, SIGKILL what is left after 90 s. The grace is long because the
    servers a benchmark starts live in their own sessions: only the benchmark's own clean-up stops them."""
    for sig, wait in ((signal.SIGTERM, 90), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def busy_warning(m: dict[str, Any]) -> list[str]:
    """A warning line when something else kept the cores busy (the numbers are then slowed, unevenly)."""
    start, end, cores = m["load_average_start"][0], m["load_average_end"][0], m["usable_cores"] or 1
    if start <= 0.5 * cores and end <= 0.5 * cores + 1:  # at the end, the last benchmark itself counts one
        return []
    worst = max(start, end)
    return [f"**Warning: the 1-minute load average reached {worst:.1f} on {m['usable_cores']} cores: other work "
            "was running, so these numbers are slowed. Run on a quiet machine.**", ""]


def write_markdown(report: dict[str, Any], path: Path) -> None:
    m = report["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    lines = [f"# IZ*Net benchmarks, {report['started']}", "",
             f"Command: `{report['command']}`{' (tiny sizes: the numbers mean nothing)' if report['quick'] else ''}; "
             f"took {report['seconds'] / 60:.1f} min, finished {report['finished']}.", "",
             *busy_warning(m), "## Machine", "",
             markdown_table([{"": "CPU", " ": m["cpu"]},
                             {"": "cores", " ": f"{m['cores']} ({m['usable_cores']} usable by this run)"},
                             {"": "RAM", " ": f"{m['ram_gib']} GiB"},
                             {"": "OS", " ": f"{m['os']}, {m['arch']}"},
                             {"": "Python", " ": m["python"]},
                             {"": "libraries", " ": versions},
                             {"": "load average at start (1, 5, 15 min)", " ": m["load_average_start"]},
                             {"": "load average at end (1, 5, 15 min)", " ": m["load_average_end"]}]), "",
             "## Summary: every comparison, measured side by side in one run", "",
             "Ratio = candidate / baseline of the metric; `better` says which way is good.", "",
             markdown_table(report["summary"]) if report["summary"] else "(no comparisons)", ""]
    lines += ["## Benchmarks", "", markdown_table([{"benchmark": r["bench"], "status": r["status"],
                                                    "seconds": r.get("seconds"), "reason": r.get("reason", "")}
                                                   for r in report["benchmarks"]]), ""]
    for r in report["benchmarks"]:
        lines += [f"### {r['bench']}: {r.get('title', '')}", "", f"`{r['command']}` ({r['status']}, {r['seconds']:.0f} s)",
                  "", render_result(r), ""]
        if r["status"] == "failed" and r.get("tail"):
            lines += ["```", *r["tail"], "```", ""]
    path.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    from iznet.config import shared_data_dir

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="Tiny sizes (a minute or two): checks that all runs.")
    ap.add_argument("--out-dir", type=Path, default=RESULTS, help="Where bench.json, bench.md and logs go.")
    ap.add_argument("--only", default="", help="Run only these benchmarks (comma-separated names).")
    ap.add_argument("--detector", action="append", default=[], help="Trained detector(s) for detection_speed.")
    ap.add_argument("--embedder", default=None, help="Trained embedder dir for embedding_backends [a fresh net].")
    ap.add_argument("--extra", action="append", default=[], metavar="NAME:ARGS",
                    help="More arguments for one benchmark, after its defaults (so they win), e.g. "
                         "'gallery_index:--hnsw-max 100000'. Repeatable.")
    args = ap.parse_args(argv)

    all_benches = benches(shared_data_dir())
    only = {n.strip() for n in args.only.split(",") if n.strip()}
    unknown = only - {b.name for b in all_benches}
    if unknown:
        ap.error(f"unknown benchmark(s) {', '.join(sorted(unknown))}: {', '.join(b.name for b in all_benches)}")
    chosen = [b for b in all_benches if not only or b.name in only]
    extra_args: dict[str, list[str]] = {}
    for e in args.extra:
        name, _, more = e.partition(":")
        if name not in {b.name for b in all_benches}:
            ap.error(f"--extra {e!r}: no benchmark called {name!r}")
        extra_args.setdefault(name, []).extend(shlex.split(more))
    out_dir = args.out_dir.resolve()
    (out_dir / "logs").mkdir(parents=True, exist_ok=True)

    started, t0 = now_utc(), time.perf_counter()
    machine = describe() | {"load_average_start": load_average()}
    results = []
    for b in chosen:
        extra = [a for d in args.detector for a in ("--detector", d)] if b.name == "detection_speed" else []
        if b.name == "embedding_backends" and args.embedder:
            extra = ["--model", args.embedder]
        extra += extra_args.get(b.name, [])
        results.append(run_one(b, (b.quick if args.quick else b.full) + extra, out_dir,
                               300 if args.quick else b.timeout_s))
        print(f"=== {b.name}: {results[-1]['status']} in {results[-1]['seconds']:.0f} s "
              f"{results[-1].get('reason', '')}", flush=True)
    machine["load_average_end"] = load_average()
    report = {"started": started, "finished": now_utc(), "seconds": round(time.perf_counter() - t0, 1),
              "command": shlex.join(["python", "-m", "bench.run", *(sys.argv[1:] if argv is None else argv)]),
              "quick": args.quick, "machine": machine, "benchmarks": results,
              "summary": [row for r in results for row in comparison_rows(r.get("comparisons", []), r["bench"])]}
    (out_dir / "bench.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    write_markdown(report, out_dir / "bench.md")
    failed = [r["bench"] for r in results if r["status"] == "failed"]
    print(f"\n{len(results)} benchmarks in {report['seconds'] / 60:.1f} min; failed: {', '.join(failed) or 'none'}; "
          f"results: {out_dir / 'bench.md'} and bench.json")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
