"""Warnings a person would otherwise have to read off the plots.

* **overlap**: two people whose medoids are closer than the spread of either person's embeddings (the study's
  Eunbi case: her faces lay up to 1.2 apart while her medoid was 1.06 from Chaeyeon's and 0.79 from Minju's).
  A person's *spread* is a high quantile (default the 95th percentile) of the pairwise distances between their
  own embeddings: the top of the boxplot's whisker without its stray outliers.
* **collapse**: many distances exactly 0 (different photos sent to one vector) or exactly 2 (unit vectors
  pushed to opposite poles), or two people sharing one medoid: the study's NN1 + binary classification run,
  whose medoid table was full of 2.0 and had Chaewon and Yena at 0.
* **not-normalised**: embeddings that are not unit length; distances then are not on the 0..2 scale every
  threshold here (and in the study's tables) assumes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class CheckSettings:
    #: quantile of a person's intra-person distances taken as their spread
    spread_quantile: float = 0.95
    #: distances within this of 0 (or of 2) count as "exactly" 0 (or 2)
    exact_tolerance: float = 1e-3
    #: share of distances exactly 0 or exactly 2 (within people, or between people) that means collapse
    collapse_share: float = 0.05
    #: share of embeddings whose norm differs from 1 by more than 1e-2 that means "not normalised"
    unnormalised_share: float = 0.01


@dataclass
class Finding:
    """One warning: ``kind`` (overlap, collapse, not-normalised, small-person), a sentence, and the numbers."""

    kind: str
    message: str
    people: list[str] = field(default_factory=list)
    level: str = "warning"
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def spread(intra: np.ndarray, quantile: float) -> float:
    """A person's spread: the ``quantile`` of their intra-person distances (NaN with fewer than 2 faces)."""
    return float(np.quantile(intra, quantile)) if len(intra) else float("nan")


def overlap_findings(people: list[str], medoid_dist: np.ndarray, spreads: np.ndarray,
                     confusion: np.ndarray) -> list[Finding]:
    """One finding per pair of people whose medoid distance is below the larger of their two spreads.

    ``confusion[a, b]`` counts a's embeddings whose nearest medoid is b's. Sorted worst first (smallest
    medoid distance relative to the spread).
    """
    found = []
    counts = confusion.sum(1)
    for a in range(len(people)):
        for b in range(a + 1, len(people)):
            s = np.nanmax([spreads[a], spreads[b]]) if not (np.isnan(spreads[a]) and np.isnan(spreads[b])) else np.nan
            d = float(medoid_dist[a, b])
            if np.isnan(s) or d >= s:
                continue
            ab = float(confusion[a, b] / max(1, counts[a]))
            ba = float(confusion[b, a] / max(1, counts[b]))
            wider = a if (np.isnan(spreads[b]) or spreads[a] >= spreads[b]) else b
            msg = (f"{people[a]} and {people[b]} overlap: their medoids are {d:.2f} apart, less than the spread "
                   f"of {people[wider]} ({s:.2f}); {ab:.0%} of {people[a]}'s faces are nearer {people[b]}'s "
                   f"medoid and {ba:.0%} of {people[b]}'s nearer {people[a]}'s")
            found.append(Finding("overlap", msg, [people[a], people[b]], details={
                "medoid_distance": d, "spread": {people[a]: float(spreads[a]), people[b]: float(spreads[b])},
                "ratio": d / s if s > 0 else 0.0, "share_nearer_other": {people[a]: ab, people[b]: ba}}))
    found.sort(key=lambda f: f.details["ratio"])
    return found


def _share(d: np.ndarray, value: float, tol: float) -> float:
    return float((np.abs(d - value) <= tol).mean()) if len(d) else 0.0


def collapse_findings(people: list[str], intra: np.ndarray, between: np.ndarray, medoid_dist: np.ndarray,
                      normalised: bool, settings: CheckSettings) -> tuple[list[Finding], dict[str, float]]:
    """Collapse warnings and the shares they were judged on.

    ``intra``: all intra-person distances pooled; ``between``: a sample of distances between different people.
    """
    tol, limit = settings.exact_tolerance, settings.collapse_share
    iu = np.triu_indices(len(people), k=1)
    med = medoid_dist[iu]
    stats = {
        "intra_at_0": _share(intra, 0.0, tol),
        "between_at_0": _share(between, 0.0, tol),
        "intra_at_2": _share(intra, 2.0, tol) if normalised else 0.0,
        "between_at_2": _share(between, 2.0, tol) if normalised else 0.0,
        "medoids_at_0": _share(med, 0.0, tol),
        "medoids_at_2": _share(med, 2.0, tol) if normalised else 0.0,
    }
    found = []
    zero = {k: v for k, v in stats.items() if k.endswith("_at_0") and not k.startswith("medoids") and v >= limit}
    if zero:
        what = " and ".join(f"{v:.0%} of the distances {'within' if k.startswith('intra') else 'between'} people"
                            for k, v in zero.items())
        found.append(Finding("collapse", f"collapsed embeddings: {what} are exactly 0 (different photos get "
                                         "the same vector)", details={k: stats[k] for k in zero}))
    two = {k: v for k, v in stats.items() if k.endswith("_at_2") and not k.startswith("medoids") and v >= limit}
    if normalised and (two or stats["medoids_at_2"] >= max(limit, 0.25)):
        parts = [f"{v:.0%} of the distances {'within' if k.startswith('intra') else 'between'} people"
                 for k, v in two.items()]
        if stats["medoids_at_2"] >= max(limit, 0.25):
            parts.append(f"{stats['medoids_at_2']:.0%} of the medoid distances")
        found.append(Finding("collapse", f"saturated embeddings: {' and '.join(parts)} are exactly 2 (opposite "
                                         "poles of the sphere); training has likely gone wrong or overfit",
                             details={"between_at_2": stats["between_at_2"], "intra_at_2": stats["intra_at_2"],
                                      "medoids_at_2": stats["medoids_at_2"]}))
    for a, b in zip(*iu):
        if medoid_dist[a, b] <= tol:
            found.append(Finding("collapse", f"{people[a]} and {people[b]} share one medoid (distance "
                                             f"{medoid_dist[a, b]:.3f}): the network sends both to the same vector",
                                 [people[a], people[b]], details={"medoid_distance": float(medoid_dist[a, b])}))
    return found, stats


def norm_findings(norms: np.ndarray, settings: CheckSettings) -> tuple[list[Finding], bool]:
    """Whether the embeddings are unit length, and a warning when they are not."""
    off = np.abs(norms - 1.0) > 1e-2
    if len(norms) and off.mean() > settings.unnormalised_share:
        msg = (f"embeddings are not L2-normalised ({off.mean():.0%} have norm outside 1 +- 0.01; norms "
               f"{norms.min():.3g}..{norms.max():.3g}): distances are not on the 0..2 scale, so compare "
               "tables only between runs of the same model, and the 'exactly 2' test is skipped")
        return [Finding("not-normalised", msg, details={"norm_min": float(norms.min()),
                                                        "norm_max": float(norms.max()),
                                                        "share_off": float(off.mean())})], False
    return [], True
