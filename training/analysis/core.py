"""``analyze(embeddings, labels) -> AnalysisResult``: the study's three tools and the warnings, as one plain
function on arrays (no model, no files), so a CLI, a trainer's snapshot hook and a Celery job all call it alike.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np

from training.analysis import checks, distances, verification
from training.analysis.checks import CheckSettings, Finding
from training.analysis.tsne import STUDY_ITERATIONS, STUDY_PERPLEXITY, TSNEResult, run_tsne


@dataclass
class PersonStats:
    name: str
    faces: int
    #: quartiles and spread (see ``CheckSettings.spread_quantile``) of intra-person distances; None with 1 face
    q1: float | None
    median: float | None
    q3: float | None
    spread: float | None
    max: float | None
    #: row (into the analysed embeddings) of this person's medoid
    medoid_row: int
    #: the person whose medoid is closest to this one's, and that distance
    nearest_person: str | None
    nearest_distance: float | None
    #: share of this person's faces whose nearest medoid is their own
    own_medoid_share: float


@dataclass
class AnalysisResult:
    people: list[str]
    labels: np.ndarray  # (N,) str
    persons: list[PersonStats]
    intra: dict[str, np.ndarray]  # person -> all intra-person distances (the boxplot)
    medoid_distances: np.ndarray  # (P, P)
    confusion: np.ndarray  # (P, P) counts: row person's faces by nearest medoid
    warnings: list[Finding]
    collapse_stats: dict[str, float]
    tsne: TSNEResult | None
    verification: dict[str, Any]
    settings: dict[str, Any]
    summary: dict[str, Any]
    paths: list[str] | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def nearest_medoid_accuracy(self) -> float:
        return float(np.trace(self.confusion) / max(1, self.confusion.sum()))

    def warnings_of(self, kind: str) -> list[Finding]:
        return [w for w in self.warnings if w.kind == kind]

    def to_dict(self) -> dict[str, Any]:
        """Everything but the raw distances and points, as JSON-able types (for a job's result or result.json)."""
        return {
            "people": self.people,
            "persons": [asdict(p) for p in self.persons],
            "medoid_distances": np.round(self.medoid_distances, 6).tolist(),
            "confusion": self.confusion.tolist(),
            "nearest_medoid_accuracy": self.nearest_medoid_accuracy,
            "warnings": [w.to_dict() for w in self.warnings],
            "collapse_stats": self.collapse_stats,
            "tsne": self.tsne.summary() if self.tsne else None,
            "verification": self.verification,
            "settings": self.settings,
            "summary": self.summary,
            "timings": self.timings,
        }


def _q(d: np.ndarray, q: float) -> float | None:
    return float(np.quantile(d, q)) if len(d) else None


def analyze(embeddings: np.ndarray, labels, *, tsne: bool = True, perplexity: float = STUDY_PERPLEXITY,
            iterations: int = STUDY_ITERATIONS, tsne_init: np.ndarray | None = None, seed: int = 0,
            check_settings: CheckSettings = CheckSettings(), max_points_per_person: int = 1500,
            between_pairs: int = 20_000, metrics: bool = True, pairs: list | None = None,
            pairs_source: str | None = None, paths: list[str] | None = None, threads: int = 1,
            progress: Callable[[str], None] | None = None) -> AnalysisResult:
    """Judge embeddings of labelled faces.

    ``embeddings`` (N, D); ``labels`` (N,) person names. ``tsne=False`` skips the (slow) t-SNE. ``pairs``
    (row a, row b, fold) are verification pairs among the rows (e.g. from an LFW pairs file); without them the
    verification numbers use balanced all-pairs of these faces. ``paths`` (N,) names each face's image so the
    report can show each person's medoid face. ``threads`` caps BLAS/OpenMP threads while it runs (1 suits a
    shared machine; uncapped threads on a busy one make t-SNE many times slower).
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=max(1, int(threads))):
        return _analyze(embeddings, labels, tsne, perplexity, iterations, tsne_init, seed, check_settings,
                        max_points_per_person, between_pairs, metrics, pairs, pairs_source, paths, threads, progress)


def _analyze(embeddings, labels, tsne, perplexity, iterations, tsne_init, seed, check_settings,
             max_points_per_person, between_pairs, metrics, pairs, pairs_source, paths, threads,
             progress) -> AnalysisResult:
    say = progress or (lambda _msg: None)
    x = np.asarray(embeddings, np.float32)
    labels = np.asarray([str(v) for v in np.asarray(labels).tolist()])
    if x.ndim != 2 or len(x) != len(labels):
        raise ValueError(f"embeddings {x.shape} and labels ({len(labels)}) do not match")
    if len(x) == 0:
        raise ValueError("nothing to analyse: no embeddings")
    if not np.isfinite(x).all():
        raise ValueError("embeddings contain NaN or infinite values")
    rng = np.random.default_rng(seed)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()

    people, groups = distances.group_indices(labels)
    say(f"distances and medoids of {len(people)} people")
    intra = {p: distances.intra_distances(x[g], max_points_per_person, rng) for p, g in zip(people, groups)}
    medoid_rows = np.array([g[distances.medoid_index(x[g])] for g in groups])
    medoids = x[medoid_rows]
    med_d = distances.medoid_distances(medoids)
    confusion = verification.confusion_matrix(x, labels, people, medoids)
    spreads = np.array([checks.spread(intra[p], check_settings.spread_quantile) for p in people])
    timings["distances"] = time.perf_counter() - t0

    persons = []
    for k, (p, g) in enumerate(zip(people, groups)):
        others = np.delete(np.arange(len(people)), k)
        near = others[np.argmin(med_d[k, others])] if len(others) else None
        d = intra[p]
        persons.append(PersonStats(
            name=p, faces=len(g), q1=_q(d, 0.25), median=_q(d, 0.5), q3=_q(d, 0.75),
            spread=None if np.isnan(spreads[k]) else float(spreads[k]), max=float(d.max()) if len(d) else None,
            medoid_row=int(medoid_rows[k]), nearest_person=None if near is None else people[near],
            nearest_distance=None if near is None else float(med_d[k, near]),
            own_medoid_share=float(confusion[k, k] / max(1, len(g)))))

    norms = np.linalg.norm(x, axis=1)
    found, normalised = checks.norm_findings(norms, check_settings)
    pooled = np.concatenate(list(intra.values())) if intra else np.zeros(0)
    between = distances.sample_between(x, labels, between_pairs, rng)
    collapse, stats = checks.collapse_findings(people, pooled, between, med_d, normalised, check_settings)
    found += collapse
    overlaps = checks.overlap_findings(people, med_d, spreads, confusion)
    n_pairs = len(people) * (len(people) - 1) // 2
    if len(overlaps) >= 3 and len(overlaps) >= n_pairs / 2:
        found.append(Finding("poor-separation", f"{len(overlaps)} of {len(people) * (len(people) - 1) // 2} pairs "
                                                "of people overlap: this embedder does not yet tell these people "
                                                f"apart (only {np.trace(confusion) / max(1, confusion.sum()):.0%} "
                                                "of faces are nearest their own person's medoid)",
                             details={"overlapping_pairs": len(overlaps), "pairs": n_pairs}))
    found += overlaps
    small = [p.name for p in persons if p.faces < 2]
    if small:
        found.append(Finding("small-person", f"{len(small)} people have a single face, so no spread and no box: "
                                             + ", ".join(small[:10]) + (" ..." if len(small) > 10 else ""),
                             small, level="info"))
    timings["checks"] = time.perf_counter() - t0 - timings["distances"]

    vm: dict[str, Any] = {"available": False, "note": "not computed (metrics=False)"}
    if metrics:
        t1 = time.perf_counter()
        vm = verification.verification_metrics(x, labels, pairs, pairs_source, seed=seed)
        timings["verification"] = time.perf_counter() - t1

    ts = None
    if tsne:
        t1 = time.perf_counter()
        say(f"t-SNE of {len(x)} embeddings (perplexity {perplexity:g}, up to {iterations} iterations)")
        ts = run_tsne(x, perplexity, iterations, seed, init=tsne_init, threads=threads)
        timings["tsne"] = time.perf_counter() - t1

    summary = {
        "faces": int(len(x)), "people": len(people), "dimension": int(x.shape[1]),
        "norm_min": float(norms.min()), "norm_max": float(norms.max()), "normalised": normalised,
        "median_intra": float(np.median(pooled)) if len(pooled) else None,
        "median_between": float(np.median(between)) if len(between) else None,
        "min_medoid_distance": float(med_d[np.triu_indices(len(people), 1)].min()) if len(people) > 1 else None,
        "nearest_medoid_accuracy": float(np.trace(confusion) / max(1, confusion.sum())),
        "overlaps": sum(1 for w in found if w.kind == "overlap"),
        "collapse": any(w.kind == "collapse" for w in found),
    }
    settings = {"perplexity": perplexity, "iterations": iterations, "seed": seed, "tsne": tsne,
                "max_points_per_person": max_points_per_person, "between_pairs": between_pairs,
                **asdict(check_settings)}
    timings["total"] = time.perf_counter() - t0
    return AnalysisResult(people, labels, persons, intra, med_d, confusion, found, stats, ts, vm, settings,
                          summary, list(paths) if paths is not None else None, timings)
