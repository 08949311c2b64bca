"""The one result format every benchmark writes, so ``bench.run`` can gather them into one report.

A benchmark module builds a :class:`Result`, adds rows (flat dicts, one table) and comparisons (a candidate
measured against its baseline in the same run, as a ratio), and writes it with ``--json PATH``::

    {"bench": "gallery_index", "title": "...", "status": "ok" | "skipped", "reason": "",
     "params": {...}, "rows": [{...}, ...], "notes": ["..."],
     "comparisons": [{"name", "metric", "baseline", "candidate", "better": "higher" | "lower",
                      "baseline_value", "candidate_value", "ratio"}]}

``ratio`` is always candidate / baseline of ``metric``; ``better`` says which way is good, so 0.5 on a
"lower is better" latency means the candidate takes half the time. A part of a benchmark that cannot run
here is a row whose ``status`` is ``"skipped: <reason>"``; a benchmark that cannot run at all raises
:class:`Skip` inside :func:`main_with_result`, which writes a result with status "skipped" and the reason.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable


class Skip(Exception):
    """This benchmark cannot run here (the message says why); it is reported, not failed."""


@dataclass
class Comparison:
    name: str
    metric: str
    baseline: str
    candidate: str
    baseline_value: float
    candidate_value: float
    better: str = "higher"  # which way of `metric` is good

    @property
    def ratio(self) -> float | None:
        if not self.baseline_value or not math.isfinite(self.baseline_value):
            return None
        return sig(self.candidate_value / self.baseline_value)

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"baseline_value": sig(self.baseline_value),
                               "candidate_value": sig(self.candidate_value), "ratio": self.ratio}


@dataclass
class Result:
    bench: str
    title: str
    params: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    status: str = "ok"
    reason: str = ""

    def row(self, **values: Any) -> dict[str, Any]:
        self.rows.append(values)
        return values

    def compare(self, name: str, metric: str, baseline: str, candidate: str, baseline_value: float,
                candidate_value: float, better: str = "higher") -> Comparison:
        assert better in ("higher", "lower"), better
        c = Comparison(name, metric, baseline, candidate, float(baseline_value), float(candidate_value), better)
        self.comparisons.append(c)
        return c

    def to_json(self) -> dict[str, Any]:
        return {"bench": self.bench, "title": self.title, "status": self.status, "reason": self.reason,
                "params": self.params, "rows": self.rows, "notes": self.notes,
                "comparisons": [c.to_json() for c in self.comparisons]}

    def write(self, path: str | Path | None) -> None:
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(json.dumps(self.to_json(), indent=2, default=str) + "\n")

    def print(self) -> None:
        print(f"\n## {self.title}\n")
        print(render_result(self.to_json()))


def sig(x: float, digits: int = 4) -> float:
    """Round to ``digits`` significant digits (JSON stays readable; benchmark noise is larger anyway)."""
    if x is None or not isinstance(x, (int, float)) or not math.isfinite(x) or x == 0:
        return x
    return round(x, max(0, digits - 1 - int(math.floor(math.log10(abs(x))))))


def add_json_option(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--json", type=Path, default=None, metavar="PATH",
                    help="Write the result (rows and comparisons, bench/common.py's format) to PATH.")


def main_with_result(run: Callable[[argparse.Namespace], Result], ap: argparse.ArgumentParser,
                     argv: list[str] | None, name: str, title: str) -> Result:
    """Parse ``argv``, run the benchmark, print its table and write ``--json``; a :class:`Skip` is a result."""
    args = ap.parse_args(argv)
    # bench.run stops a benchmark that overruns with SIGTERM: exit through the finally blocks, so the servers
    # and temporary folders a benchmark made are cleaned up
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        result = run(args)
    except Skip as e:
        result = Result(name, title, params=_params(args), status="skipped", reason=str(e))
    result.params = {**_params(args), **result.params}
    result.print()
    result.write(args.json)
    return result


def _params(args: argparse.Namespace) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "json"}


# --- markdown -------------------------------------------------------------------------------------------

def fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        if v == 0:
            return "0"
        return f"{v:.3g}" if abs(v) < 1 else f"{v:,.4g}" if abs(v) < 1e4 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, (list, tuple)):
        return ", ".join(fmt(x) for x in v)
    return str(v).replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """One table whose columns are the union of the rows' keys, in the order they first appear."""
    if not rows:
        return "(no rows)"
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join(" --- " for _ in cols) + "|"]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def comparison_rows(comparisons: list[dict[str, Any]], bench: str | None = None) -> list[dict[str, Any]]:
    return [{**({"bench": bench} if bench else {}), "comparison": c["name"], "metric": c["metric"],
             "baseline": c["baseline"], "candidate": c["candidate"], "baseline value": c["baseline_value"],
             "candidate value": c["candidate_value"], "ratio (cand/base)": c["ratio"],
             "better": c["better"]} for c in comparisons]


def render_result(res: dict[str, Any]) -> str:
    """A benchmark's section body: its table (or why it was skipped/failed), comparisons and notes."""
    if res.get("status") != "ok":
        return f"**{res.get('status')}: {res.get('reason') or 'no reason given'}**"
    parts = [markdown_table(res["rows"])]
    if res.get("comparisons"):
        parts.append("Comparisons (same run, ratio = candidate / baseline):\n\n"
                     + markdown_table(comparison_rows(res["comparisons"])))
    parts += [f"- {n}" for n in res.get("notes", [])]
    return "\n\n".join(parts)


def percentile(xs: list[float], q: float) -> float:
    """The q-quantile (0..1) of ``xs`` by nearest rank; the bench reports p50 and p95 with it."""
    xs = sorted(xs)
    if not xs:
        return float("nan")
    return xs[min(len(xs) - 1, max(0, math.ceil(q * len(xs)) - 1))]


def now_utc() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())


def eprint(*a: Any) -> None:
    print(*a, file=sys.stderr, flush=True)
