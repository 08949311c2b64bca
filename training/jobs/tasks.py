"""The job kinds as Celery tasks. Each body calls the core (the dataset builder, the trainers, the analysis,
the gallery); none re-implements it. Each reads and writes artifacts in the store, resumes after a redelivery
from what it recorded, and returns ``{"outputs": {...}, "metrics": {...}}`` (kept in the job record).
Each body imports its core when it runs, so a worker starts without loading every trainer.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

from iznet.errors import NotFoundError, UserInputError
from iznet.store import atomic_write_json
from training.jobs.celery_app import TASKS, app
from training.jobs.runtime import JobContext, run_job

JOB_MARKER = "job.json"  # written into a published version: which job made it


def job_task(kind: str) -> Callable:
    name, _queue = TASKS[kind]

    def register(body: Callable[..., dict[str, Any]]):
        @app.task(name=name, bind=True, acks_late=True, reject_on_worker_lost=True)
        def task(self, **params: Any) -> dict[str, Any]:
            return run_job(self, kind, body, params)

        task.body = body
        return task

    return register


def _published_by(ctx: JobContext, kind: str, name: str) -> int | None:
    """The version of ``kind/name`` this job already published (a redelivery after the publish), if any."""
    for v in reversed(ctx.store.versions(kind, name)):
        marker = ctx.store.dir(kind, name) / str(v) / JOB_MARKER
        try:
            if json.loads(marker.read_text()).get("job") == ctx.job_id:
                return v
        except (FileNotFoundError, ValueError):
            continue
    return None


def _job_staging(ctx: JobContext, kind: str, name: str, seed_from_current: bool) -> Path:
    """This job's staging folder for ``kind/name``: the same one on every delivery, so work resumes. Created
    atomically (optionally as a copy of the current version, to grow it)."""
    staging = ctx.store.dir(kind, name) / f".staging-job-{ctx.job_id}"
    if staging.is_dir():
        return staging
    tmp = staging.with_name(f"{staging.name}.init-{uuid.uuid4().hex[:8]}")
    try:
        current = ctx.store.current(kind, name) if seed_from_current else None
    except NotFoundError:
        current = None
    if current is not None and current.is_dir():
        shutil.copytree(current, tmp, ignore=shutil.ignore_patterns(JOB_MARKER))
    else:
        tmp.mkdir(parents=True)
    tmp.rename(staging)
    return staging


def _publish(ctx: JobContext, kind: str, name: str, staging: Path, extra: dict[str, Any]) -> int:
    atomic_write_json(staging / JOB_MARKER, {"job": ctx.job_id, "kind": ctx.kind, "params": ctx.params, **extra})
    return ctx.store.publish(kind, name, staging)


# ------------------------------------------------------------------------------------------------ dataset


@job_task("dataset")
def build_dataset_job(ctx: JobContext, *, src: str, name: str, config: dict[str, Any] | None = None,
                      workers: int = 1, checkpoint_every: int = 100, grow: bool = True) -> dict[str, Any]:
    """Build (or grow) the dataset ``datasets/<name>`` from the photo folder ``src`` with
    :func:`iznet.data.builder.build_dataset`, in a staging folder of this job, published as a new version when
    complete. A redelivered job resumes in the same folder: the builder skips every photo its manifest already
    records (it checkpoints the manifest every ``checkpoint_every`` photos)."""
    from iznet.data.builder import MANIFEST, BuildConfig, build_dataset

    conf = dict(config or {})
    if "ratios" in conf:
        conf["ratios"] = tuple(conf["ratios"])
    try:
        cfg = BuildConfig(**conf)
    except TypeError as exc:
        raise UserInputError(f"bad dataset build settings: {exc}") from None
    done = _published_by(ctx, "datasets", name)
    if done is None:
        staging = _job_staging(ctx, "datasets", name, seed_from_current=grow)
        manifest = staging / MANIFEST
        recorded = sum(1 for line in manifest.read_text().splitlines() if line.strip()) if manifest.exists() else 0
        report = build_dataset(src, staging, cfg, workers=workers, progress=False, checkpoint_every=checkpoint_every,
                               on_progress=lambda i, n: ctx.progress(i, n, phase="faces", unit="photos",
                                                                     resumed_from=recorded))
        metrics = {"scanned": report.scanned, "processed": report.processed, "already_recorded": recorded,
                   "counts": report.counts, "by_split": report.by_split, "by_reason": report.by_reason,
                   "identities": report.identities, "seconds": round(report.seconds, 2),
                   "pairs": {k: v.get("note") for k, v in report.pairs.items()}}
        version = _publish(ctx, "datasets", name, staging, {"metrics": metrics})
    else:  # published by an earlier delivery that died before recording it
        if ctx.store.current_version("datasets", name) < done:
            ctx.store.set_current("datasets", name, done)
        version = done
        info = json.loads((ctx.store.dir("datasets", name) / str(done) / JOB_MARKER).read_text())
        metrics = info.get("metrics", {})
    path = ctx.store.dir("datasets", name) / str(version)
    return {"outputs": {"dataset": f"datasets/{name}/{version}", "path": str(path),
                        "info": str(path / "dataset.json")},
            "metrics": metrics}


# ------------------------------------------------------------------------------------------------ training


def _follow_log(ctx: JobContext, log: Path, total: int, stop: threading.Event) -> None:
    """Report a trainer's progress from its ``log.jsonl`` (step, samples seen, loss, dev accuracy)."""
    seen = 0
    metric: dict[str, Any] = {}
    step = 0
    while not stop.wait(1.0):
        try:
            lines = log.read_text().splitlines() if log.exists() else []
        except OSError:
            continue
        for line in lines[seen:]:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            step = rec.get("step", step)
            for k in ("loss", "accuracy", "auc", "lr"):
                if k in rec and isinstance(rec[k], (int, float)):
                    metric[k] = round(float(rec[k]), 4)
            if "samples_seen" in rec:
                metric["samples_seen"] = rec["samples_seen"]
        seen = len(lines)
        try:
            ctx.progress(step, total, phase="training", unit="steps", metric=dict(metric), force=True)
        except Exception:  # noqa: BLE001 - a cancel is handled by revoke(terminate); keep following
            pass


def _publish_model(ctx: JobContext, name: str, run_dir: Path, files: tuple[str, ...]) -> dict[str, Any]:
    done = _published_by(ctx, "models", name)
    if done is None:
        staging = _job_staging(ctx, "models", name, seed_from_current=False)
        for f in files:
            if (run_dir / f).exists():
                shutil.copy2(run_dir / f, staging / f)
        done = _publish(ctx, "models", name, staging, {})
    path = ctx.store.dir("models", name) / str(done)
    return {"model": f"models/{name}/{done}", "path": str(path), "model_card": str(path / "model.json")}


@job_task("train-embedder")
def train_embedder_job(ctx: JobContext, *, name: str, config: dict[str, Any]) -> dict[str, Any]:
    """Train a face embedder with :class:`training.trainer.Trainer`, its checkpoints in this job's work
    folder (a redelivered job resumes from the last one, saved every ``eval_every`` steps), then publish
    ``models/<name>`` (weights, model card, training log) as a new version."""
    from training.trainer import Trainer, TrainConfig

    run_dir = ctx.work_dir / "run"
    try:
        cfg = TrainConfig(**{**config, "out": str(run_dir), "progress": False})
    except TypeError as exc:
        raise UserInputError(f"bad training config: {exc}") from None
    if not cfg.data:
        raise UserInputError("the training config needs `data` (a folder of <person>/ photos or a built dataset)")
    resume = run_dir if (run_dir / "checkpoint.pt").exists() else None
    stop = threading.Event()
    follower = threading.Thread(target=_follow_log, args=(ctx, run_dir / "log.jsonl", cfg.steps, stop), daemon=True)
    follower.start()
    try:
        trainer = Trainer(cfg, resume=resume)
        start_step = trainer.step
        summary = trainer.fit()
    finally:
        stop.set()
    outputs = _publish_model(ctx, name, run_dir, ("model.pt", "model.json", "log.jsonl"))
    outputs["resumed_from_step"] = start_step if resume is not None else None
    outputs["device"] = str(trainer.device)
    return {"outputs": outputs, "metrics": {k: summary.get(k) for k in
                                            ("stop_reason", "step", "samples_seen", "elapsed_s", "dev",
                                             "best_dev_accuracy")}}


@job_task("train-detector")
def train_detector_job(ctx: JobContext, *, name: str, config: dict[str, Any]) -> dict[str, Any]:
    """Train the YOLO-style detector with :func:`training.detection.train.train`, then publish
    ``models/<name>`` (detector.pt, its card and log). The trainer saves its state every
    ``checkpoint_minutes``; a redelivered job continues from the last save (``outputs.resumed_from_step``)."""
    from training.detection.train import TrainConfig, train

    run_dir = ctx.work_dir / "run"
    out = run_dir / "detector.pt"
    try:
        cfg = TrainConfig(**{**config, "out": out})
    except TypeError as exc:
        raise UserInputError(f"bad detector training config: {exc}") from None
    stop = threading.Event()
    follower = threading.Thread(target=_follow_log, args=(ctx, out.with_suffix(".log.jsonl"), cfg.steps, stop),
                                daemon=True)
    follower.start()
    try:
        train(cfg, progress=False)
    finally:
        stop.set()
    outputs = _publish_model(ctx, name, run_dir, ("detector.pt", "detector.json", "detector.log.jsonl"))
    outputs["model_card"] = outputs["model_card"].replace("model.json", "detector.json")
    card = json.loads((Path(outputs["path"]) / "detector.json").read_text())
    # the trainer's card lists the step of every resume; this process's is the last one
    outputs["resumed_from_step"] = (card["train"].get("resumed_at_steps") or [None])[-1]
    return {"outputs": outputs, "metrics": dict(card.get("train", {}))}


# ----------------------------------------------------------------------------------------- judging models


@job_task("analyze")
def analyze_job(ctx: JobContext, *, model: str, dataset: str, name: str | None = None,
                options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Judge an embedder with :func:`training.analysis.make_report` (t-SNE, distance boxplots, medoid table,
    warnings, verification on pairs) on the faces of ``dataset``, and publish the HTML report as
    ``reports/<name>``."""
    from training.analysis import make_report

    name = name or f"analysis-{Path(model).name}"
    done = _published_by(ctx, "reports", name)
    if done is None:
        staging = _job_staging(ctx, "reports", name, seed_from_current=False)
        ctx.progress(0, None, phase="analysing", force=True)
        try:
            result, _index = make_report(staging, model=model, data=dataset, progress=False, **(options or {}))
        except TypeError as exc:
            raise UserInputError(f"bad analysis options: {exc}") from None
        summary = result.to_dict()
        metrics = {k: summary.get(k) for k in ("nearest_medoid_accuracy", "verification", "collapse_stats", "summary")}
        metrics["warnings"] = [str(getattr(w, "message", w)) for w in result.warnings]
        done = _publish(ctx, "reports", name, staging, {"metrics": metrics})
    else:
        metrics = json.loads((ctx.store.dir("reports", name) / str(done) / JOB_MARKER).read_text()).get("metrics", {})
    path = ctx.store.dir("reports", name) / str(done)
    return {"outputs": {"report": f"reports/{name}/{done}", "path": str(path), "html": str(path / "index.html"),
                        "model": model},
            "metrics": metrics}


@job_task("evaluate")
def evaluate_job(ctx: JobContext, *, model: str, pairs: str, data: str | None = None, folds: str | None = None,
                 name: str | None = None) -> dict[str, Any]:
    """LFW-protocol verification (k-fold accuracy, ROC AUC, TAR@FAR, rank-1) of ``model`` on a pairs file with
    ``iznet evaluate``; the full report (with the ROC curve) is published as ``reports/<name>``."""
    from iznet.cli.embed import evaluate

    name = name or f"evaluation-{Path(model).name}"
    staging = _job_staging(ctx, "reports", name, seed_from_current=False)
    args = [model, "--pairs", pairs, "--json", str(staging / "report.json"), "--roc-csv", str(staging / "roc.csv")]
    if data:
        args += ["--data", data]
    if folds:
        args += ["--folds", str(folds)]
    evaluate.main(args=args, standalone_mode=False)
    report = json.loads((staging / "report.json").read_text())
    version = _publish(ctx, "reports", name, staging, {})
    path = ctx.store.dir("reports", name) / str(version)
    return {"outputs": {"report": f"reports/{name}/{version}", "path": str(path / "report.json"), "model": model},
            "metrics": {k: v for k, v in report.items() if k != "roc"}}


# -------------------------------------------------------------------------------------------- re-indexing


class _ResumableEmbedder:
    """Wraps the new model for :func:`iznet.gallery.reindex`: each batch's vectors are saved in the job's work
    folder (named by batch number and a hash of its crops), so a redelivered re-index reuses every batch done
    before its worker died; each batch also reports progress (and notices a cancel)."""

    def __init__(self, inner, folder: Path, total: int, ctx: JobContext):
        self.inner, self.folder, self.total, self.ctx = inner, folder, total, ctx
        self.folder.mkdir(parents=True, exist_ok=True)
        self.batch = 0
        self.done = 0
        self.reused = 0
        self.embedded = 0

    def __getattr__(self, name: str):  # input_size, version, ...
        return getattr(self.inner, name)

    def embed(self, crops):
        import hashlib

        import numpy as np

        h = hashlib.sha1()
        for c in crops:
            h.update(str(c.shape).encode())
            h.update(np.ascontiguousarray(c).tobytes())
        path = self.folder / f"batch-{self.batch:06d}-{h.hexdigest()[:16]}.npy"
        if path.exists():
            vecs = np.load(path)
            self.reused += len(crops)
        else:
            vecs = np.asarray(self.inner.embed(crops), dtype=np.float32)
            tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:6]}.tmp")
            with open(tmp, "wb") as fh:
                np.save(fh, vecs)
            tmp.replace(path)
            self.embedded += len(crops)
        self.batch += 1
        self.done += len(crops)
        self.ctx.progress(self.done, self.total, phase="re-embedding", unit="exemplars",
                          metric={"reused": self.reused})
        return vecs


@job_task("reindex")
def reindex_job(ctx: JobContext, *, gallery: str, model: str, model_digest: str | None = None,
                batch_size: int = 256) -> dict[str, Any]:
    """Re-embed every stored exemplar of ``galleries/<gallery>`` with ``model`` in batches through
    :func:`iznet.gallery.reindex`, which publishes the new gallery version in one atomic CURRENT switch when
    complete (never half-switched). Batches done before a worker died are reused after the redelivery; a
    gallery already indexed with this model is not indexed again."""
    from iznet.gallery import GalleryStore, reindex
    from iznet.registry import create_embedder

    started = time.perf_counter()
    gstore = GalleryStore(ctx.store)
    embedder = create_embedder(model, store=ctx.store.root)
    current = gstore.load(gallery)
    digest = str(embedder.version.get("digest"))
    if current.model.get("digest") == digest:
        return {"outputs": {"gallery": f"galleries/{gallery}/{current.version}", "model": model,
                            "model_digest": model_digest, "note": "already indexed with this model; nothing to do"},
                "metrics": {"exemplars": len(current.exemplars), "embedded": 0, "reused": 0, "seconds": 0.0}}
    wrapped = _ResumableEmbedder(embedder, ctx.work_dir / "reindex", len(current.exemplars), ctx)
    old, new = reindex(gstore, gallery, wrapped, make_current=True, batch=batch_size)
    seconds = time.perf_counter() - started
    shutil.rmtree(ctx.work_dir, ignore_errors=True)
    return {"outputs": {"gallery": f"galleries/{gallery}/{new}", "previous": f"galleries/{gallery}/{old}",
                        "path": str(ctx.store.dir("galleries", gallery) / str(new)), "model": model,
                        "model_digest": model_digest},
            "metrics": {"exemplars": wrapped.done, "embedded": wrapped.embedded, "reused": wrapped.reused,
                        "batches": wrapped.batch, "batch_size": batch_size, "seconds": round(seconds, 2),
                        "exemplars_per_s": round(wrapped.done / seconds, 1) if seconds > 0 else None}}
