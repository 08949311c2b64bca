"""`make bench` end to end at tiny sizes: one JSON and one markdown report with the machine described and
every benchmark's table (or why it was skipped), plus the parts of the runner and the sampler baseline that
the numbers rest on. Speed itself is measured by the benchmarks, never asserted here."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from bench.common import Result
from bench.run import Bench, benches, run_one
from bench.sampler_speed import NaiveTripletSampler, tv_from_uniform
from iznet.config import shared_data_dir

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_quick_run_writes_json_and_markdown_with_the_machine_and_every_benchmark(tmp_path):
    out = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", "bench.run", "--quick", "--out-dir", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=880)
    report = json.loads((out / "bench.json").read_text())
    by_name = {r["bench"]: r for r in report["benchmarks"]}
    assert list(by_name) == [b.name for b in benches(shared_data_dir())]
    for name, r in by_name.items():  # each ran or says why not; none vanished or crashed
        assert r["status"] in ("ok", "skipped"), f"{name} {r['status']}: {r.get('reason')}\n" + "\n".join(r.get("tail", []))
        assert r["rows"] if r["status"] == "ok" else r["reason"], name
    assert proc.returncode == 0, proc.stdout[-3000:]

    machine = report["machine"]
    assert machine["cpu"] and machine["cores"] >= 1 and machine["ram_gib"] > 0
    assert machine["versions"]["torch"].startswith("2.") and len(machine["load_average_end"]) == 3
    assert report["command"].startswith("python -m bench.run --quick")

    # the comparisons README's table lists are there, each a ratio from one run
    summary = report["summary"]
    assert all(isinstance(c["ratio (cand/base)"], float) for c in summary)
    gw = [c for c in summary if c["bench"] == "gateway_vs_local"]
    assert {c["metric"] for c in gw} == {"p50 ms", "p95 ms", "photos/s"} and len(gw) == 6  # 1 and 2 clients
    assert any(c["bench"] == "gallery_index" and c["candidate"] == "ivf" for c in summary)
    assert any(c["bench"] == "sampler_speed" for c in summary)
    embed_rows = by_name["embedding_backends"]["rows"]
    assert {(r["backend"], r["batch"]) for r in embed_rows} == {(b, n) for b in ("torch", "onnx", "triton")
                                                                for n in (1, 8)}
    assert all(r["status"] == "ok" or r["status"].startswith("skipped: ") for r in embed_rows)
    trained = [r for r in by_name["detection_speed"]["rows"] if r["kind"] == "trained"]
    assert trained and trained[0]["status"] == "ok" and trained[0]["detector"] == "iznet-yolo-tiny"  # the shipped one

    md = (out / "bench.md").read_text()
    assert md.startswith("# IZ*Net benchmarks, 20") and "## Machine" in md and machine["cpu"] in md
    assert "## Summary" in md and "load average at end" in md
    for name, r in by_name.items():
        assert f"### {name}:" in md
        if r["status"] == "skipped":
            assert f"skipped: {r['reason']}" in md
    assert "| gateway | 2 |" in md  # the concurrent clients' row of the gateway table
    assert (out / "logs" / "gallery_index.log").stat().st_size > 0


def test_a_failing_benchmark_is_reported_with_its_reason(tmp_path):
    (tmp_path / "logs").mkdir()
    r = run_one(Bench("no_such_bench", "missing module", [], [], 60), [], tmp_path, timeout=60)
    assert r["status"] == "failed" and "exit 1" in r["reason"] and "No module named" in r["reason"]


def test_comparison_ratio_is_candidate_over_baseline():
    res = Result("x", "x")
    c = res.compare("search", "queries/s", "exact", "ivf", 200.0, 1000.0)
    assert c.ratio == 5.0 and res.to_json()["comparisons"][0]["ratio"] == 5.0


def test_naive_baseline_is_the_studys_algorithm_1_and_its_skew_is_exact():
    # The study's example: C1 = {a, b}, C2 = {c, d, e}. Algorithm 1 picks C1 as anchor half the time, so the
    # three triplets with pair (a, b) get 1/2 together instead of 3/9.
    labels = [0, 0, 1, 1, 1]
    s = NaiveTripletSampler(labels, seed=0)
    draws = s.sample_batch(20000)
    anchors_in_c1 = np.mean(draws[:, 0] < 2)
    assert abs(anchors_in_c1 - 0.5) < 0.02
    assert all(labels[a] == labels[p] != labels[n] for a, p, n in draws[:200])
    counts = Counter(map(tuple, np.sort(draws[:, :2], axis=1).tolist()))
    assert set(counts) == {(0, 1), (2, 3), (2, 4), (3, 4)}
    # exact total-variation distances from uniform: 1/6 for Algorithm 1, 1/12 for the study's Algorithm 2
    assert tv_from_uniform(np.array([2, 3]), "naive") == pytest.approx(1 / 6)
    assert tv_from_uniform(np.array([2, 3]), "study") == pytest.approx(1 / 12)
    assert tv_from_uniform(np.array([2, 3]), "exact") == 0.0


@pytest.mark.shared_data
def test_gpu_check_trains_each_network_on_the_device_it_is_given(tmp_path):
    """The GPU check's own path, on the CPU: every row names its device and images/s; an unknown device is
    a failed row, not a crash of the whole check."""
    from bench.gpu_check import main

    if not (shared_data_dir() / "att_orl").is_dir():
        pytest.skip("needs the shared data")
    out = tmp_path / "gpu.json"
    assert main(["--device", "cpu", "--steps", "2", "--batch", "4", "--small-inputs", "--threads", "1",
                 "--workers", "0", "--networks", "small,detector", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["network"] for r in rows] == ["small", "detector-tiny"]
    assert all(r["device"] == "cpu" and r["images_per_s"] > 0 and r["steps"] == 2 for r in rows)
    assert main(["--device", "tpu", "--steps", "2", "--networks", "small", "--json", str(out)]) == 1
    assert "unknown device" in json.loads(out.read_text())["rows"][0]["error"]
