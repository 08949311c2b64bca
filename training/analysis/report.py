"""``write_report(result, out_dir)``: an :class:`AnalysisResult` as a folder a person opens in a browser.

::

    out_dir/index.html     the report: warnings first, then metrics, figures, tables, model card
    out_dir/tsne.png, boxplot.png, medoids.png
    out_dir/medoids.csv    the medoid distance table; persons.csv per-person numbers
    out_dir/result.json    result.to_dict() plus what the report was made from
    out_dir/faces/<k>.jpg  each person's medoid face, when the result knows the image paths
"""

from __future__ import annotations

import csv
import datetime as dt
import html
import json
from pathlib import Path
from typing import Any

import numpy as np

from training.analysis import plots
from training.analysis.core import AnalysisResult

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1100px;color:#222;padding:0 16px}
h1{margin-bottom:4px} h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}
.meta{color:#555} .warn{background:#fff3cd;border-left:5px solid #e0a800;padding:8px 12px;margin:6px 0}
.collapse{background:#f8d7da;border-left-color:#c82333} .info{background:#e8f1fb;border-left-color:#3b82c4}
.ok{background:#d4edda;border-left:5px solid #28a745;padding:8px 12px}
table{border-collapse:collapse;font-size:13px;margin:8px 0} td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}
th{background:#f3f3f3} td.name,th.name{text-align:left} .flag{font-weight:bold;outline:2px solid #000}
img.fig{max-width:100%;border:1px solid #eee} img.face{width:48px;height:48px;object-fit:cover}
.scroll{overflow-x:auto} pre{background:#f6f6f6;padding:8px;overflow:auto;font-size:12px} .kpi{font-size:20px;font-weight:bold}
"""


def _e(v: Any) -> str:
    return html.escape(str(v))


def _f(v: Any, digits: int = 3) -> str:
    if v is None:
        return "&ndash;"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return _e(v)


def _cell_colour(d: float, top: float) -> str:
    """Red (small) to green (large) like the heatmap, light enough to read text on."""
    t = min(1.0, max(0.0, d / top)) if top > 0 else 1.0
    r, g = int(255 - 60 * t), int(190 + 55 * t)
    return f"rgb({r},{g},{int(190 + 10 * (1 - abs(t - 0.5) * 2))})"


def _medoid_faces(result: AnalysisResult, out: Path) -> dict[str, str]:
    """Copy each person's medoid face as a small JPEG; {person: relative path}. Unreadable images are skipped."""
    if not result.paths:
        return {}
    import cv2

    from iznet.errors import ImageError
    from iznet.imageio import read_image

    faces = {}
    (out / "faces").mkdir(exist_ok=True)
    for k, p in enumerate(result.persons):
        try:
            img = read_image(result.paths[p.medoid_row])
        except (ImageError, OSError):
            continue
        h, w = img.shape[:2]
        scale = 96 / max(h, w)
        img = cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        name = f"faces/{k:03d}.jpg"
        cv2.imwrite(str(out / name), img)
        faces[p.name] = name
    return faces


def _flagged_pairs(result: AnalysisResult) -> set[tuple[int, int]]:
    index = {p: k for k, p in enumerate(result.people)}
    return {(index[w.people[0]], index[w.people[1]]) for w in result.warnings
            if w.kind in ("overlap", "collapse") and len(w.people) == 2}


def write_figures(result: AnalysisResult, out: Path) -> dict[str, str]:
    """The PNG figures of a result into ``out``; {figure: file name}."""
    figs = {}
    if result.tsne is not None:
        ts = result.tsne
        plots.tsne_figure(ts.points, result.labels, result.people, out / "tsne.png",
                          title=f"t-SNE of {len(result.labels)} faces (perplexity {ts.perplexity:.3g}, "
                                f"{ts.iterations} iterations)",
                          medoid_rows=[p.medoid_row for p in result.persons])
        figs["tsne"] = "tsne.png"
    plots.boxplot_figure(result.intra, result.people, out / "boxplot.png",
                         nearest={p.name: p.nearest_distance for p in result.persons},
                         spreads={p.name: p.spread for p in result.persons},
                         spread_quantile=result.settings.get("spread_quantile"))
    figs["boxplot"] = "boxplot.png"
    plots.heatmap_figure(result.medoid_distances, result.people, out / "medoids.png",
                         flagged=_flagged_pairs(result))
    figs["medoids"] = "medoids.png"
    return figs


def write_tables(result: AnalysisResult, out: Path) -> None:
    with open(out / "medoids.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([""] + result.people)
        for p, row in zip(result.people, result.medoid_distances):
            w.writerow([p] + [f"{v:.6f}" for v in row])
    with open(out / "persons.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        cols = ["name", "faces", "q1", "median", "q3", "spread", "max", "nearest_person", "nearest_distance",
                "own_medoid_share"]
        w.writerow(cols)
        for p in result.persons:
            w.writerow([getattr(p, c) for c in cols])


def _warnings_html(result: AnalysisResult, limit: int = 12) -> str:
    ws = result.warnings
    if result.warnings_of("poor-separation"):
        limit = min(limit, 5)  # the headline says it; the worst few are examples
    if not [w for w in ws if w.level == "warning"]:
        parts = ['<div class="ok">No warnings: no two people overlap (every medoid distance is at least both '
                 'spreads) and the embeddings show no sign of collapse.</div>']
    else:
        parts = []
    shown = 0
    overlaps = result.warnings_of("overlap")
    for w in ws:
        if w.kind == "overlap":
            if shown >= limit:
                continue
            shown += 1
        cls = "warn " + ("collapse" if w.kind in ("collapse", "not-normalised", "poor-separation") else "info" if w.level == "info" else "")
        parts.append(f'<div class="{cls}"><b>{_e(w.kind)}</b>: {_e(w.message)}</div>')
    if len(overlaps) > limit:
        parts.append(f'<div class="warn">... and {len(overlaps) - limit} more overlapping pairs (the worst shown '
                     'above; all outlined in the medoid table below and listed in result.json).</div>')
    return "\n".join(parts)


def _metrics_html(result: AnalysisResult) -> str:
    s, v = result.summary, result.verification
    rows = [("faces / people", f"{s['faces']} / {s['people']}"),
            ("nearest-medoid accuracy (share of faces nearest their own person's medoid)",
             _f(result.nearest_medoid_accuracy)),
            ("median distance within a person / between people",
             f"{_f(s['median_intra'])} / {_f(s['median_between'])}"),
            ("smallest distance between two medoids", _f(s["min_medoid_distance"]))]
    if v.get("available"):
        if "accuracy" in v:
            rows += [(f"verification accuracy ({v.get('folds')}-fold, threshold from the other folds)",
                      f"{v['accuracy']:.3f} &plusmn; {v.get('accuracy_std', 0):.3f}"),
                     ("ROC AUC", _f(v.get("auc"))),
                     (f"TAR @ FAR={v.get('far_target'):g}", _f(v.get("tar_at_far"))),
                     ("pairs (same / different)", f"{v.get('same_pairs')} / {v.get('different_pairs')}")]
        if "identification" in v and v["identification"].get("rank1") is not None:
            i = v["identification"]
            rows.append((f"rank-1 identification ({i['probes']} probes, 1 gallery face per person)",
                         _f(i["rank1"])))
    body = "".join(f"<tr><td class='name'>{k}</td><td>{val}</td></tr>" for k, val in rows)
    note = (f"<p class='meta'>Verification pairs: {_e(v['pairs_source'])}.</p>" if v.get("available") and
            v.get("pairs_source") else "")
    if not v.get("available") or v.get("note"):
        note += f"<p class='warn info'>{_e(v.get('note', ''))}</p>"
    return f"<table>{body}</table>{note}"


def _medoid_table_html(result: AnalysisResult) -> str:
    m, people = result.medoid_distances, result.people
    top = 2.0 if result.summary.get("normalised") else float(m.max() or 1.0)
    flagged = _flagged_pairs(result)
    flagged |= {(b, a) for a, b in flagged}
    head = "<tr><th></th>" + "".join(f"<th>{_e(p)}</th>" for p in people) + "</tr>"
    rows = []
    for a, p in enumerate(people):
        cells = []
        for b in range(len(people)):
            if a == b:
                cells.append("<td style='background:#ddd'>0</td>")
                continue
            cls = " class='flag'" if (a, b) in flagged else ""
            cells.append(f"<td{cls} style='background:{_cell_colour(m[a, b], top)}'>{m[a, b]:.3f}</td>")
        rows.append(f"<tr><th class='name'>{_e(p)}</th>{''.join(cells)}</tr>")
    return f"<div class='scroll'><table>{head}{''.join(rows)}</table></div>"


def _persons_html(result: AnalysisResult, faces: dict[str, str]) -> str:
    head = ("<tr><th class='name'>person</th><th>medoid face</th><th>faces</th><th>median</th><th>Q3</th>"
            "<th>spread</th><th>max</th><th class='name'>nearest person</th><th>medoid distance</th>"
            "<th>faces nearest own medoid</th></tr>")
    rows = []
    for p in result.persons:
        img = f"<img class='face' src='{_e(faces[p.name])}' alt='{_e(p.name)}'>" if p.name in faces else ""
        over = p.spread is not None and p.nearest_distance is not None and p.nearest_distance < p.spread
        dist = f"<b>{_f(p.nearest_distance)}</b>" if over else _f(p.nearest_distance)
        rows.append(f"<tr><td class='name'>{_e(p.name)}</td><td>{img}</td><td>{p.faces}</td><td>{_f(p.median)}</td>"
                    f"<td>{_f(p.q3)}</td><td>{_f(p.spread)}</td><td>{_f(p.max)}</td>"
                    f"<td class='name'>{_e(p.nearest_person or '')}</td><td>{dist}</td>"
                    f"<td>{p.own_medoid_share:.0%}</td></tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _card_summary_html(card: dict[str, Any]) -> str:
    """The few lines of a model card a reader wants first; whatever the card lacks is left out."""
    def get(*keys):
        v: Any = card
        for k in keys:
            v = v.get(k) if isinstance(v, dict) else None
        return v

    ds = get("dataset") or {}
    rows = [("name / version", " / ".join(str(v) for v in (get("name"), get("version")) if v is not None)),
            ("architecture", get("architecture", "name")), ("method", get("method", "name")),
            ("input size", get("preprocess", "input_size") or get("input_size")),
            ("trained on", ", ".join(f"{k} {ds[k]}" for k in ("source", "train_people", "train_images",
                                                                "excluded_folds") if ds.get(k) is not None)),
            ("samples seen", get("training", "samples_seen"))]
    dev = get("metrics", "dev")
    if isinstance(dev, dict) and "accuracy" in dev:
        rows.append(("dev verification at training time",
                     f"accuracy {dev['accuracy']:.3f}" + (f", AUC {dev['auc']:.3f}" if "auc" in dev else "")
                     + (f", TAR@FAR={dev.get('far_target', 1e-3):g} {dev['tar_at_far']:.3f}" if "tar_at_far" in dev
                        else "") + (f" on {dev['pairs']} pairs" if "pairs" in dev else "")))
    body = "".join(f"<tr><td class='name'>{_e(k)}</td><td class='name'>{_e(v)}</td></tr>" for k, v in rows
                   if v not in (None, ""))
    return f"<table>{body}</table>" if body else ""


def write_report(result: AnalysisResult, out_dir: str | Path, *, title: str = "IZ*Net embedding analysis",
                 model_card: dict[str, Any] | None = None, source: dict[str, Any] | None = None,
                 extra_html: str = "") -> Path:
    """Write the report folder (figures, tables, result.json, index.html); returns the index.html path.

    ``model_card``: the model's card (shown verbatim); ``source``: what was analysed (model path, data folder,
    split, people chosen), shown at the top and kept in result.json.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figs = write_figures(result, out)
    write_tables(result, out)
    faces = _medoid_faces(result, out)
    record = {**result.to_dict(), "source": source or {}, "model_card": model_card,
              "generated": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    (out / "result.json").write_text(json.dumps(record, indent=2, default=str) + "\n")

    s, st = result.summary, result.settings
    src = source or {}
    model_line = ""
    if model_card:
        name = model_card.get("name") or model_card.get("architecture", {}).get("name", "model")
        model_line = f"<div class='meta'>Model: <b>{_e(name)}</b> {_e(src.get('model', ''))}</div>"
    elif src.get("model") or src.get("embeddings"):
        model_line = f"<div class='meta'>Embeddings: {_e(src.get('model') or src.get('embeddings'))}</div>"
    data_line = ""
    if src.get("data"):
        data_line = (f"<div class='meta'>Data: {_e(src['data'])}" + (f", split {_e(src['split'])}" if src.get("split")
                                                                      else "") + "</div>")
    ts = result.tsne
    tsne_html = "<p class='meta'>t-SNE was not run.</p>"
    if ts is not None:
        capped = (f" (asked {ts.requested_perplexity:g}; capped at (n-1)/3 for {s['faces']} faces)"
                  if ts.perplexity < ts.requested_perplexity else "")
        tsne_html = (f"<img class='fig' src='{figs['tsne']}' alt='t-SNE'><p class='meta'>scikit-learn t-SNE, perplexity "
                     f"{ts.perplexity:.3g}{capped}, {ts.iterations} of at most {ts.requested_iterations} iterations "
                     f"(stops early without progress), KL divergence {ts.kl_divergence:.3f}, seed {st['seed']}. "
                     "Outlined points are each person's medoid. t-SNE keeps neighbourhoods, not distances or "
                     "cluster sizes: read sizes and gaps off the boxplot and the medoid table.</p>")
    card = (f"{_card_summary_html(model_card)}<details><summary>the whole model card</summary>"
            f"<pre>{_e(json.dumps(model_card, indent=2, default=str))}</pre></details>" if model_card
            else "<p class='meta'>No model card (the embeddings were given directly).</p>")
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title><style>{CSS}</style></head><body>
<h1>{_e(title)}</h1>
{model_line}{data_line}
<div class="meta">{s['faces']} faces of {s['people']} people, {s['dimension']}-d embeddings (norms {s['norm_min']:.3f}..{s['norm_max']:.3f}); generated {_e(record['generated'])}</div>
<h2>Warnings</h2>
{_warnings_html(result)}
<h2>Metrics</h2>
{_metrics_html(result)}
<h2>t-SNE</h2>
{tsne_html}
<h2>Pairwise distances within each person</h2>
<img class="fig" src="{figs['boxplot']}" alt="boxplot">
<p class="meta">One box per person: quartiles of the distances between that person's own faces, whiskers at 1.5 IQR.
The blue bar is the person's spread ({st['spread_quantile']:.0%} quantile); the red x the distance from their medoid to the
nearest other person's medoid. A red x below the blue bar means that person overlaps a neighbour.</p>
<h2>Distances between medoids</h2>
<img class="fig" src="{figs['medoids']}" alt="medoid heatmap">
{_medoid_table_html(result)}
<p class="meta">Each person's medoid is the face whose embedding has the smallest summed distance to the rest of theirs.
Outlined cells: the pair overlaps (medoid distance below a spread) or shares a medoid. Also in medoids.csv.</p>
<h2>People</h2>
{_persons_html(result, faces)}
{extra_html}
<h2>Model card</h2>
{card}
<h2>Settings</h2>
<pre>{_e(json.dumps({"settings": st, "source": src, "timings_s": {k: round(v, 2) for k, v in result.timings.items()}}, indent=2, default=str))}</pre>
</body></html>
"""
    index = out / "index.html"
    index.write_text(page)
    return index
