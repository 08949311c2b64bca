"""Snapshots during training: the three tools at chosen sample counts, so a sequence shows clusters forming.

The study took its t-SNE figures after 8000, 16000, 27520 ... triplets. A trainer makes a recorder with the
counts and a fixed set of probe faces, and calls it after each step::

    rec = SnapshotRecorder(at=[0, 8000, 16000, 32000], out_dir=run / "snapshots", labels=probe_labels)
    for step in ...:
        ...
        samples_seen += batch_size
        rec.maybe_snapshot(samples_seen, lambda: embed(model, probe_crops))   # embeds only when due
    rec.finish()   # sequence.png (t-SNE side by side), progress.png, index.html, history.json

``embed_fn`` is called only when a snapshot is due and must return the probes' embeddings (N, D) in the order
of ``labels`` (putting the model in eval mode and back is the trainer's business). A step that jumps past
several counts takes one snapshot, captioned with the true sample count. Each t-SNE starts from the previous
layout and is then turned onto it (rotation/reflection only), so people keep their place from one plot to the
next and movement means something.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from training.analysis import plots
from training.analysis.core import analyze
from training.analysis.report import write_figures


@dataclass
class Snapshot:
    samples: int
    folder: Path
    summary: dict[str, Any]
    warnings: list[str]
    points: np.ndarray | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"samples": self.samples, "folder": str(self.folder), "summary": self.summary,
                "warnings": self.warnings}


def align(points: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Rotate/reflect a t-SNE layout onto the previous one (orthogonal Procrustes): t-SNE's orientation is
    arbitrary, so without this a sequence spins from frame to frame."""
    from scipy.linalg import orthogonal_procrustes

    a = points - points.mean(0)
    b = reference - reference.mean(0)
    r, _ = orthogonal_procrustes(a, b)
    return (a @ r).astype(np.float32)


class SnapshotRecorder:
    """Takes snapshots (t-SNE, boxplot, medoid table, warnings) of a probe set at chosen sample counts.

    ``at``: sample counts (0 means before training); ``every``: also every this many samples. ``perplexity``
    and ``iterations`` are the t-SNE settings (iterations default lower than the study's 5000 to keep
    training moving; each snapshot starts from the last layout, so it needs fewer).
    """

    def __init__(self, at: Iterable[int] = (), out_dir: str | Path = "snapshots", labels=None, *,
                 every: int | None = None, perplexity: float = 150.0, iterations: int = 1000, seed: int = 0,
                 figures: bool = True, progress: Callable[[str], None] | None = None):
        if labels is None:
            raise ValueError("SnapshotRecorder needs the probe faces' labels")
        self.labels = np.asarray([str(v) for v in np.asarray(labels).tolist()])
        self.people = sorted(set(self.labels.tolist()))
        self.pending = sorted({int(a) for a in at if int(a) >= 0})
        self.every = int(every) if every else None
        self._next_every = 0 if self.every else None
        self.out_dir = Path(out_dir)
        self.perplexity, self.iterations, self.seed = perplexity, iterations, seed
        self.figures = figures
        self.say = progress or (lambda _m: None)
        self.history: list[Snapshot] = []

    def due(self, samples_seen: int) -> bool:
        """Whether a snapshot is owed at this sample count."""
        if self.pending and self.pending[0] <= samples_seen:
            return True
        return self._next_every is not None and self._next_every <= samples_seen

    def maybe_snapshot(self, samples_seen: int, embed_fn: Callable[[], Any]) -> Snapshot | None:
        """Take a snapshot if one is due (calling ``embed_fn`` only then); returns it, or None."""
        if not self.due(samples_seen):
            return None
        out = embed_fn()
        emb = out[0] if isinstance(out, tuple) else out
        return self.snapshot(samples_seen, emb)

    def snapshot(self, samples_seen: int, embeddings: np.ndarray) -> Snapshot:
        """Take a snapshot now of ``embeddings`` (the probes, in label order)."""
        emb = np.asarray(embeddings, np.float32)
        if len(emb) != len(self.labels):
            raise ValueError(f"embed_fn returned {len(emb)} embeddings for {len(self.labels)} probe labels")
        self.pending = [a for a in self.pending if a > samples_seen]
        if self.every:
            self._next_every = (samples_seen // self.every + 1) * self.every
        self.say(f"snapshot at {samples_seen} samples")
        prev = self.history[-1].points if self.history else None
        result = analyze(emb, self.labels, perplexity=self.perplexity, iterations=self.iterations,
                         tsne_init=prev, seed=self.seed, metrics=False, tsne=True)
        folder = self.out_dir / f"samples_{samples_seen:09d}"
        folder.mkdir(parents=True, exist_ok=True)
        if self.figures:
            write_figures(result, folder)
        (folder / "result.json").write_text(json.dumps({"samples": samples_seen, **result.to_dict()}, indent=2,
                                                       default=str) + "\n")
        points = align(result.tsne.points, prev) if prev is not None else result.tsne.points
        snap = Snapshot(samples_seen, folder, result.summary, [w.message for w in result.warnings
                                                               if w.level == "warning"], points)
        self.history.append(snap)
        return snap

    def finish(self) -> Path | None:
        """Write the sequence of t-SNE plots, the progress plot, history.json and index.html; returns the
        index path (None when no snapshot was taken)."""
        if not self.history:
            return None
        self.out_dir.mkdir(parents=True, exist_ok=True)
        frames = [(f"after {s.samples:,} samples" if s.samples else "before training", s.points, self.labels)
                  for s in self.history]
        plots.sequence_figure(frames, self.people, self.out_dir / "sequence.png")
        plots.progress_figure([s.samples for s in self.history], [s.summary for s in self.history],
                              self.out_dir / "progress.png")
        (self.out_dir / "history.json").write_text(json.dumps([s.to_dict() for s in self.history], indent=2,
                                                              default=str) + "\n")
        rows = "".join(
            f"<tr><td>{s.samples:,}</td><td>{s.summary['nearest_medoid_accuracy']:.3f}</td>"
            f"<td>{s.summary['median_intra']:.3f}</td><td>{s.summary['median_between']:.3f}</td>"
            f"<td>{s.summary['overlaps']}</td><td>{'yes' if s.summary['collapse'] else 'no'}</td>"
            f"<td><a href='{s.folder.name}/tsne.png'>t-SNE</a> <a href='{s.folder.name}/boxplot.png'>boxplot</a> "
            f"<a href='{s.folder.name}/medoids.png'>medoids</a></td></tr>"
            for s in self.history)
        page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Snapshots during training</title>
<style>body{{font-family:system-ui,sans-serif;margin:24px}} td,th{{border:1px solid #ccc;padding:3px 8px}}
table{{border-collapse:collapse}} img{{max-width:100%}}</style></head><body>
<h1>Snapshots during training</h1>
<p>{len(self.labels)} probe faces of {len(self.people)} people; t-SNE perplexity {self.perplexity:g}
(capped at (n-1)/3), up to {self.iterations} iterations, each started from the previous layout.</p>
<img src="sequence.png" alt="t-SNE sequence"><img src="progress.png" alt="progress">
<table><tr><th>samples</th><th>nearest-medoid accuracy</th><th>median within</th><th>median between</th>
<th>overlapping pairs</th><th>collapse</th><th>figures</th></tr>{rows}</table></body></html>
"""
        index = self.out_dir / "index.html"
        index.write_text(page)
        return index
