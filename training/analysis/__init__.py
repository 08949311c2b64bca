"""Judging embeddings the study's way, sharper: t-SNE coloured by person, boxplots of intra-person distances,
the medoid distance table, warnings for overlapping people and collapsed embeddings, snapshots during
training, and an HTML report.

The core is plain functions on arrays so that the CLI, a trainer and a job queue call it alike::

    result = analyze(embeddings, labels)          # embeddings (N, D), labels (N,) person names
    write_report(result, "report/")               # report/index.html + PNG figures + tables + result.json
    make_report("report/", model=M, data=DIR)     # the whole `iznet analyze` as one call (JSON-able arguments)

    rec = SnapshotRecorder(at=[0, 8000, 16000], out_dir="snapshots/", labels=probe_labels)
    rec.maybe_snapshot(samples_seen, lambda: model_embed(probe_crops))   # from the training loop
    rec.finish()                                   # snapshots/sequence.png and index.html
"""

from training.analysis.checks import CheckSettings, Finding
from training.analysis.core import AnalysisResult, PersonStats, analyze
from training.analysis.report import write_report
from training.analysis.run import make_report
from training.analysis.snapshots import SnapshotRecorder

__all__ = ["AnalysisResult", "CheckSettings", "Finding", "PersonStats", "SnapshotRecorder", "analyze",
           "make_report", "write_report"]
