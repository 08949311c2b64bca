"""``iznet jobs``: long work through Celery and Redis (submit, status, follow, list, cancel; worker, redis)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from iznet.errors import NotFoundError, UserInputError
from iznet.registry import detector_help
from iznet.sizes import CROP_SIZE


def _jobs(ctx: click.Context):
    from training.jobs.client import Jobs

    return Jobs(ctx.obj["redis_url"], ctx.obj["store"])


@click.group()
@click.option("--redis-url", envvar="IZNET_REDIS_URL", default=None, show_envvar=True,
              help="Redis broker and result backend [default: redis://127.0.0.1:6379/0].")
@click.option("--store", envvar="IZNET_STORE", type=click.Path(path_type=Path, file_okay=False), default=None,
              show_envvar=True, help="The artifact store the jobs read and write [default: ~/.iznet].")
@click.pass_context
def jobs(ctx: click.Context, redis_url: str | None, store: Path | None) -> None:
    """Long work as queued jobs: dataset building, training, analysis, evaluation, gallery re-indexing.

    Jobs go through Redis to Celery workers (`iznet jobs worker`): queue `gpu` for training, `cpu` for the
    rest. Each job records its inputs, attempts, outputs and metrics in the store (<store>/jobs/ID.json),
    reports progress while it runs, and is redelivered and resumed when its worker dies.
    """
    ctx.ensure_object(dict)
    ctx.obj.update(redis_url=redis_url, store=store)


# ------------------------------------------------------------------------------------------------ submit


def _submit(ctx: click.Context, kind: str, params: dict[str, Any], queue: str | None, follow: bool,
            key: str | None = None) -> None:
    client = _jobs(ctx)
    job_id, new = client.submit(kind, params, queue=queue, key=key)
    if new:
        click.echo(f"submitted {kind} job {job_id}")
    else:
        click.echo(f"the same {kind} is already job {job_id} (not submitted twice)")
    if follow:
        _follow(client, job_id)


def _common(f):
    f = click.option("--queue", type=click.Choice(["cpu", "gpu"]), default=None,
                     help="Queue to send the job to [default: gpu for training, cpu for the rest].")(f)
    f = click.option("--follow", "-f", is_flag=True, help="Show a progress bar until the job finishes.")(f)
    return f


def _load_config(path: Path | None, sets: tuple[str, ...]) -> dict[str, Any]:
    conf: dict[str, Any] = {}
    if path is not None:
        try:
            conf = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise UserInputError(f"{path}: not a readable JSON config ({exc})") from None
    for item in sets:
        if "=" not in item:
            raise UserInputError(f"--set {item!r}: expected KEY=VALUE")
        k, v = item.split("=", 1)
        try:
            conf[k] = json.loads(v)
        except ValueError:
            conf[k] = v
    return conf


@jobs.group()
def submit() -> None:
    """Queue a job of one kind (each kind's --help lists its options)."""


@submit.command("dataset")
@click.argument("src", type=click.Path(path_type=Path, file_okay=False))
@click.argument("name")
@click.option("--teacher", default="default", show_default=True,
              help=f"Face detector: {detector_help()}.")
@click.option("--size", type=click.IntRange(16, 1024), default=CROP_SIZE, show_default=True, help="Crop side, pixels.")
@click.option("--split-by", type=click.Choice(["image", "identity"]), default="image", show_default=True,
              help="Split each person's photos, or the people.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the split and pairs.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Any other build setting (margin, min_face, dedup_bits, ratios, folds, pairs_per_fold, ...).")
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True,
              help="Processes the job uses inside its worker.")
@click.option("--checkpoint-every", type=click.IntRange(1), default=100, show_default=True,
              help="Record the manifest every this many photos (a redelivered job resumes from there).")
@click.option("--grow/--fresh", default=True, show_default=True,
              help="Start from the dataset's current version and process only new photos, or build anew.")
@_common
@click.pass_context
def submit_dataset(ctx, src: Path, name: str, teacher: str, size: int, split_by: str, seed: int, sets, workers: int,
                   checkpoint_every: int, grow: bool, queue, follow) -> None:
    """Build the face dataset NAME (datasets/NAME in the store) from SRC, one folder of photos per person."""
    if not src.is_dir():
        raise NotFoundError(f"{src}: no such folder (one sub-folder of photos per person)")
    from iznet.registry import detector_spec

    config = {"teacher": detector_spec(teacher), "size": size, "split_by": split_by, "seed": seed, **_load_config(None, sets)}
    _submit(ctx, "dataset", {"src": str(src.resolve()), "name": name, "config": config, "workers": workers,
                             "checkpoint_every": checkpoint_every, "grow": grow}, queue, follow)


@submit.command("train-embedder")
@click.argument("name")
@click.option("--config", "config_file", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="A JSON training config (the fields of training.trainer.TrainConfig).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override one config field (JSON value).")
@_common
@click.pass_context
def submit_train_embedder(ctx, name: str, config_file, sets, queue, follow) -> None:
    """Train a face embedder; publish it as models/NAME (weights + model card)."""
    _submit(ctx, "train-embedder", {"name": name, "config": _load_config(config_file, sets)}, queue, follow)


@submit.command("train-detector")
@click.argument("name")
@click.option("--config", "config_file", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="A JSON training config for the detector trainer.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override one config field (JSON value).")
@_common
@click.pass_context
def submit_train_detector(ctx, name: str, config_file, sets, queue, follow) -> None:
    """Train the YOLO-style face detector; publish it as models/NAME."""
    _submit(ctx, "train-detector", {"name": name, "config": _load_config(config_file, sets)}, queue, follow)


@submit.command("analyze")
@click.argument("model")
@click.argument("dataset")
@click.option("--name", default=None, help="Report name (reports/NAME) [default: analysis-<model>].")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="An analysis option (e.g. perplexity=150).")
@_common
@click.pass_context
def submit_analyze(ctx, model: str, dataset: str, name, sets, queue, follow) -> None:
    """Judge MODEL on DATASET: t-SNE, distance boxplots, medoid table, warnings, as an HTML report.

    --set takes make_report's options: tsne=false, perplexity=150, iterations=5000, split=test, people=20, ..."""
    _submit(ctx, "analyze", {"model": str(Path(model).resolve()) if Path(model).exists() else model,
                             "dataset": str(Path(dataset).resolve()) if Path(dataset).exists() else dataset,
                             "name": name, "options": _load_config(None, sets)}, queue, follow)


@submit.command("evaluate")
@click.argument("model")
@click.option("--pairs", required=True, help="LFW-format pairs file.")
@click.option("--data", default=None, help="Faces root the pairs resolve against [the pairs file's folder].")
@click.option("--folds", default=None, help="Only these folds of the pairs file, e.g. 5 [all].")
@click.option("--name", default=None, help="Report name (reports/NAME) [default: evaluation-<model>].")
@_common
@click.pass_context
def submit_evaluate(ctx, model: str, pairs: str, data, folds, name, queue, follow) -> None:
    """LFW-protocol verification of MODEL (accuracy, AUC, TAR@FAR, rank-1), published as a report."""
    _submit(ctx, "evaluate", {"model": str(Path(model).resolve()) if Path(model).exists() else model,
                              "pairs": str(Path(pairs).resolve()), "data": str(Path(data).resolve()) if data else None,
                              "folds": folds, "name": name}, queue, follow)


@submit.command("reindex")
@click.argument("gallery")
@click.argument("model")
@click.option("--batch-size", type=click.IntRange(1), default=256, show_default=True,
              help="Exemplars embedded per batch (each batch is checkpointed).")
@_common
@click.pass_context
def submit_reindex(ctx, gallery: str, model: str, batch_size: int, queue, follow) -> None:
    """Re-embed every exemplar of GALLERY with MODEL and publish the new gallery version atomically.

    Submitting the same (gallery, model) again while it is queued, running or done returns that job."""
    from training.jobs.client import file_digest

    digest = file_digest(model)
    _submit(ctx, "reindex", {"gallery": gallery, "model": model, "model_digest": digest, "batch_size": batch_size},
            queue, follow, key=f"reindex:{gallery}:{digest}")


# ------------------------------------------------------------------------------------------ look, follow


def _print_status(st: dict[str, Any]) -> None:
    click.echo(f"job {st['id']}  {st['kind']}  {st['state']}  (queue {st['queue']}, submitted {st['submitted_at']}, "
               f"attempts {st['attempts']})")
    p = st.get("progress")
    if p:
        total = p.get("total")
        eta = f", ETA {p['eta_s']:.0f}s" if p.get("eta_s") is not None else ""
        metric = "".join(f", {k} {v}" for k, v in (p.get("metric") or {}).items())
        click.echo(f"  {p.get('phase')}: {p.get('done')}/{total if total is not None else '?'} {p.get('unit')}"
                   f"{eta}{metric}")
    if st.get("note"):
        click.echo(f"  note: {st['note']}")
    for k, v in (st.get("outputs") or {}).items():
        click.echo(f"  output {k}: {v}")
    metrics = st.get("metrics") or {}
    if metrics:
        click.echo("  metrics: " + json.dumps(metrics, sort_keys=True)[:600])
    if st.get("error"):
        click.echo(f"  error: {st['error']}")
    if st.get("record"):
        click.echo(f"  record: {st['record']}")


def _follow(client, job_id: str) -> None:
    from tqdm import tqdm

    bar = None
    key = None
    last: dict[str, Any] = {}
    noted = False
    try:
        for st in client.follow(job_id):
            last = st
            p = st.get("progress") or {}
            if p.get("total"):
                if bar is None or key != (p.get("phase"), p["total"]):
                    if bar is not None:
                        bar.close()
                    key = (p.get("phase"), p["total"])
                    bar = tqdm(total=p["total"], desc=f"{st['kind']} {p.get('phase')}", unit=p.get("unit", "it"),
                               file=sys.stderr, dynamic_ncols=True)
                bar.n = min(p.get("done") or 0, p["total"])
                post = {k: v for k, v in (p.get("metric") or {}).items()}
                if (p.get("attempt") or 1) > 1:
                    post["attempt"] = p["attempt"]
                bar.set_postfix(post, refresh=False)
                bar.refresh()
            if st.get("note") and not noted:
                click.echo(f"{job_id}: {st['note']}", err=True)
                noted = True
            elif not st.get("note"):
                noted = False
    finally:
        if bar is not None:
            if last.get("state") == "SUCCESS":
                bar.n = bar.total  # finished between two looks
                bar.refresh()
            bar.close()
    _print_status(last)
    if last.get("state") != "SUCCESS":
        raise click.exceptions.Exit(1)


@jobs.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.pass_context
def status(ctx, job_id: str, as_json: bool) -> None:
    """State, progress (done/total, ETA, current metric), outputs and metrics of a job."""
    st = _jobs(ctx).status(job_id)
    click.echo(json.dumps(st, indent=2, default=str)) if as_json else _print_status(st)


@jobs.command()
@click.argument("job_id")
@click.pass_context
def follow(ctx, job_id: str) -> None:
    """Follow a job with a progress bar until it finishes; exit 0 when it succeeded, 1 otherwise."""
    _follow(_jobs(ctx), job_id)


@jobs.command("list")
@click.option("--limit", type=click.IntRange(1), default=20, show_default=True, help="Most recent jobs shown.")
@click.option("--json", "as_json", is_flag=True, help="Print the statuses as JSON.")
@click.pass_context
def list_jobs(ctx, limit: int, as_json: bool) -> None:
    """The most recent jobs, newest first."""
    client = _jobs(ctx)
    client.ping()
    rows = client.list(limit)
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        click.echo("no jobs")
    for st in rows:
        p = st.get("progress") or {}
        prog = f" {p.get('done')}/{p.get('total')}" if p else ""
        out = next(iter((st.get("outputs") or {}).values()), "")
        click.echo(f"{st['id']}  {st['kind']:<14} {st['state']:<9}{prog}  {st['submitted_at']}  {out or st.get('error') or ''}")


@jobs.command()
@click.argument("job_id")
@click.pass_context
def cancel(ctx, job_id: str) -> None:
    """Cancel a job: a queued one never starts, a running one stops (its partial work is left unpublished)."""
    st = _jobs(ctx).cancel(job_id)
    click.echo(f"job {job_id}: {st['state']}")


# ------------------------------------------------------------------------------------------ local running


@jobs.command()
@click.option("--queues", "-Q", default="cpu,gpu", show_default=True, help="Queues this worker serves.")
@click.option("--concurrency", "-c", type=click.IntRange(1), default=1, show_default=True,
              help="Jobs run at once (one process each).")
@click.option("--hostname", "-n", default=None, help="Worker name [default: celery@<host>].")
@click.option("--loglevel", default="INFO", show_default=True, help="Celery log level.")
@click.pass_context
def worker(ctx, queues: str, concurrency: int, hostname, loglevel: str) -> None:
    """Run a Celery worker here (it says which queues and which device, GPU or CPU, it uses)."""
    from training.jobs.local import worker_command

    bad = sorted(set(queues.split(",")) - {"cpu", "gpu"})
    if bad:
        raise UserInputError(f"unknown queue(s) {', '.join(bad)}: use cpu, gpu or cpu,gpu")
    if ctx.obj["redis_url"]:
        os.environ["IZNET_REDIS_URL"] = ctx.obj["redis_url"]
    if ctx.obj["store"]:
        os.environ["IZNET_STORE"] = str(ctx.obj["store"])
    cmd = worker_command(queues, concurrency, hostname, loglevel)
    os.execv(cmd[0], cmd)


@jobs.command()
@click.option("--port", type=click.IntRange(1, 65535), default=6379, show_default=True, help="Port on 127.0.0.1.")
@click.option("--dir", "data_dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Keep an append-only file here so queued jobs survive a restart [default: no persistence].")
def redis(port: int, data_dir) -> None:
    """Run a local redis-server in the foreground (the one on PATH, else the one `make setup` put in the venv)."""
    from training.jobs.local import redis_server_binary

    cmd = [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
           "--appendonly", "yes" if data_dir else "no"]
    if data_dir:
        data_dir.mkdir(parents=True, exist_ok=True)
        cmd += ["--dir", str(data_dir)]
    os.execv(cmd[0], cmd)
