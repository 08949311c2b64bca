"""The study's figures as PNG, drawn with matplotlib's Agg canvas (no pyplot state, no display, safe in a
worker): t-SNE coloured by person, boxplots of intra-person distances, the medoid distance heatmap, and a
sequence of snapshot t-SNE plots."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

MARKERS = "osD^v<>Pp*hX"


def person_styles(people: Sequence[str]) -> dict[str, tuple]:
    """A (colour, marker) per person: distinct colours up to 20 people, then colours repeat with new markers."""
    import matplotlib

    n = len(people)
    if n <= 10:
        colours = [matplotlib.colormaps["tab10"](k) for k in range(10)]
    else:  # tab20's strong colours first, then their light twins, so 12 people get 10 distinct hues + 2
        tab20 = matplotlib.colormaps["tab20"]
        colours = [tab20(k) for k in range(0, 20, 2)] + [tab20(k) for k in range(1, 20, 2)]
    nc = len(colours)
    return {p: (colours[k % nc], MARKERS[(k // nc) % len(MARKERS)]) for k, p in enumerate(people)}


def _save(fig: Figure, path: Path, dpi: int = 110) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def _tsne_axes(ax, points: np.ndarray, labels: np.ndarray, people: Sequence[str], styles: dict,
               medoid_rows: Sequence[int] | None = None, size: float = 12) -> None:
    for p in people:
        m = labels == p
        colour, marker = styles[p]
        ax.scatter(points[m, 0], points[m, 1], s=size, color=colour, marker=marker, alpha=0.8, linewidths=0,
                   label=f"{p} ({int(m.sum())})")
    if medoid_rows is not None:
        for p, r in zip(people, medoid_rows):
            ax.scatter(points[r, 0], points[r, 1], s=size * 5, color=styles[p][0], marker=styles[p][1],
                       edgecolors="black", linewidths=1.2, zorder=3)
    ax.set_xticks([])
    ax.set_yticks([])


def tsne_figure(points: np.ndarray, labels, people: Sequence[str], path: Path, title: str = "t-SNE",
                medoid_rows: Sequence[int] | None = None) -> Path:
    """Scatter of the 2-D t-SNE points, one colour per person, legend with face counts; medoids outlined."""
    labels = np.asarray(labels)
    styles = person_styles(people)
    fig = Figure(figsize=(8.5, 6.5))
    ax = fig.add_subplot()
    _tsne_axes(ax, points, labels, people, styles, medoid_rows, size=14 if len(points) < 2000 else 6)
    ax.set_title(title)
    ncol = 1 if len(people) <= 25 else 2
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, ncol=ncol, markerscale=1.5,
              title="person (faces)", title_fontsize=8, frameon=False)
    return _save(fig, path)


def boxplot_figure(intra: dict[str, np.ndarray], people: Sequence[str], path: Path,
                   nearest: dict[str, float | None] | None = None, title: str = "Intra-person pairwise distances",
                   spread_quantile: float | None = None, spreads: dict[str, float | None] | None = None) -> Path:
    """One box per person of the distances between their own embeddings. A red x marks the distance to the
    nearest other person's medoid: an x below the box's top means that person overlaps a neighbour."""
    shown = [p for p in people if len(intra.get(p, ())) > 0]
    fig = Figure(figsize=(max(6.0, 0.55 * len(shown) + 2), 5.2))
    ax = fig.add_subplot()
    if shown:
        ax.boxplot([intra[p] for p in shown], whis=1.5, showfliers=True, widths=0.6,
                   flierprops={"markersize": 2, "alpha": 0.4})
        xs = np.arange(1, len(shown) + 1)
        if spreads:
            ys = [spreads.get(p) for p in shown]
            ax.scatter([x for x, y in zip(xs, ys) if y is not None], [y for y in ys if y is not None], marker="_",
                       s=300, color="tab:blue", zorder=3,
                       label=f"spread ({spread_quantile:.0%} quantile)" if spread_quantile else "spread")
        if nearest:
            ys = [nearest.get(p) for p in shown]
            ax.scatter([x for x, y in zip(xs, ys) if y is not None], [y for y in ys if y is not None], marker="x",
                       s=50, color="red", zorder=4, label="distance to nearest other medoid")
        ax.set_xticks(xs)
        ax.set_xticklabels(shown, rotation=45, ha="right", fontsize=8)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, fontsize=8, frameon=False)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("Euclidean distance")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def heatmap_figure(matrix: np.ndarray, people: Sequence[str], path: Path, flagged: set[tuple[int, int]] = frozenset(),
                   title: str = "Distances between medoids", vmax: float | None = None) -> Path:
    """The medoid distance table as a heatmap: small distances red, large green; flagged pairs (overlaps)
    outlined in black; values printed when the table is small enough to read."""
    import matplotlib

    n = len(people)
    side = max(5.0, 0.5 * n + 2.5)
    fig = Figure(figsize=(side + 1.2, side))
    ax = fig.add_subplot()
    shown = np.ma.masked_where(np.eye(n, dtype=bool), matrix)
    off = matrix[~np.eye(n, dtype=bool)]
    top = vmax if vmax is not None else (2.0 if len(off) and off.max() <= 2.0 + 1e-6 else (off.max() if len(off) else 1.0))
    cmap = matplotlib.colormaps["RdYlGn"].with_extremes(bad="#dddddd")
    im = ax.imshow(shown, cmap=cmap, vmin=0.0, vmax=top)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="Euclidean distance")
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xticklabels(people, rotation=60, ha="right", fontsize=8)
    ax.set_yticklabels(people, fontsize=8)
    if n <= 20:
        for a in range(n):
            for b in range(n):
                if a != b:
                    ax.text(b, a, f"{matrix[a, b]:.2f}", ha="center", va="center", fontsize=7 if n > 12 else 8)
    for a, b in flagged:
        for r, c in ((a, b), (b, a)):
            ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=2))
    ax.set_title(title)
    return _save(fig, path)


def sequence_figure(frames: Sequence[tuple[str, np.ndarray, np.ndarray]], people: Sequence[str], path: Path,
                    title: str = "t-SNE during training") -> Path:
    """Snapshot t-SNE plots side by side (the study's Figures 5, 7, 9, 11, 13): ``frames`` are
    (caption, points, labels), in order; one shared legend."""
    styles = person_styles(people)
    n = len(frames)
    rows = max(1, int(np.ceil(n / 4)))
    cols = max(1, int(np.ceil(n / rows)))
    fig = Figure(figsize=(3.4 * cols + 2.2, 3.4 * rows + 0.4))
    axes = [fig.add_subplot(rows, cols, k + 1) for k in range(n)]
    for ax, (caption, pts, labs) in zip(axes, frames):
        _tsne_axes(ax, pts, np.asarray(labs), people, styles, size=6)
        ax.set_title(caption, fontsize=9)
    if axes:
        handles, names = axes[-1].get_legend_handles_labels()
        names = [s.rsplit(" (", 1)[0] for s in names]
        fig.legend(handles, names, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path, dpi=100)


def progress_figure(samples: Sequence[int], summaries: Sequence[dict], path: Path,
                    title: str = "Embeddings during training") -> Path:
    """Nearest-medoid accuracy, median distances within and between people, and overlapping pairs, against
    the samples seen."""
    fig = Figure(figsize=(8, 3.6))
    ax = fig.add_subplot(1, 2, 1)
    ax.plot(samples, [s["median_intra"] for s in summaries], "o-", label="median within a person")
    ax.plot(samples, [s["median_between"] for s in summaries], "s-", label="median between people")
    ax.plot(samples, [s["nearest_medoid_accuracy"] for s in summaries], "^-", label="nearest-medoid accuracy")
    ax.set_xlabel("samples seen")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    ax2 = fig.add_subplot(1, 2, 2)
    ax2.plot(samples, [s["overlaps"] for s in summaries], "o-", color="tab:red")
    ax2.set_xlabel("samples seen")
    ax2.set_ylabel("overlapping pairs of people")
    ax2.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path, dpi=100)
