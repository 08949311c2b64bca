"""``iznet embed train|networks`` and ``iznet evaluate``: train an embedder, judge it on verification pairs."""

from __future__ import annotations

import json
from pathlib import Path

import click

METHOD_CHOICES = ["triplet", "pair", "softmax", "distill"]


def _folds(value: str | None) -> list[int]:
    if not value:
        return []
    try:
        return [int(x) for x in str(value).replace(" ", "").split(",") if x]
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected fold numbers like 1,2,3") from None


@click.group()
def embed() -> None:
    """Face embedders: train one, list the networks."""


@embed.command("networks")
def networks() -> None:
    """List the registered embedding networks and their input sizes."""
    from iznet.embedding.networks import describe

    for d in describe():
        click.echo(f"{d['name']:<14} {d['input_size']:>4}px  {d['description']}")


@embed.command("train")
@click.option("--data", required=True, help="Faces: a folder of <person>/ image folders, or a dataset built by "
              "`iznet data build` (its train split is used).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory: checkpoint.pt, "
              "model.pt + model.json (the embedder and its model card), best/, log.jsonl.")
@click.option("--config", type=click.Path(exists=True, dir_okay=False),
              help="JSON experiment config (training/configs/*.json); flags given here override it.")
@click.option("--network", type=str, default=None, help="Architecture: small, hog, hog_lbp, nn1, nn2, inception_v3, mobilefacenet (`iznet embed networks`). [small]")
@click.option("--method", type=click.Choice(METHOD_CHOICES), default=None,
              help="triplet (FaceNet, online semi-hard mining), pair (DeepFace binary classification of pairs), "
                   "softmax (CosFace/ArcFace margin softmax baseline) or distill (regress onto a teacher's "
                   "embeddings, from `python -m training.chips`). [softmax]")
@click.option("--input-size", type=int, default=None, help="Network input side in pixels [network default].")
@click.option("--width", type=float, default=None, help="Channel multiplier (tiny versions of big nets). [1.0]")
@click.option("--net-arg", "net_args", multiple=True, metavar="KEY=JSON",
              help="Extra network argument, e.g. --net-arg hidden=512 --net-arg 'cells=[4,8,16]'. Repeatable.")
@click.option("--crop-fraction", type=float, default=None,
              help="Centre fraction of each crop fed to the network (raw 250x250 LFW: 0.45). [1.0]")
@click.option("--pairs", type=click.Path(exists=True, dir_okay=False), default=None,
              help="LFW-format pairs file naming held-out and dev people.")
@click.option("--exclude-folds", default=None, help="Folds of --pairs whose people are not trained on, e.g. 5.")
@click.option("--dev-folds", default=None, help="Folds of --pairs to verify on during training.")
@click.option("--dev-pairs", type=click.Path(exists=True, dir_okay=False), default=None,
              help="A separate dev pairs file (e.g. DST/pairs_dev.txt) to verify on during training.")
@click.option("--split", default=None, help="Split of a built dataset to train on. [train]")
@click.option("--optimizer", type=click.Choice(["sgd", "adam", "adamw"]), default=None, help="[sgd]")
@click.option("--lr", type=float, default=None, help="Peak learning rate. [0.05]")
@click.option("--momentum", type=float, default=None, help="SGD momentum. [0.9]")
@click.option("--weight-decay", type=float, default=None, help="[5e-4]")
@click.option("--batch-size", type=int, default=None,
              help="Images (softmax), pairs (pair) or triplets (triplet) per step. [32]")
@click.option("--schedule", type=click.Choice(["cosine", "step", "constant"]), default=None, help="[cosine]")
@click.option("--warmup-steps", type=int, default=None, help="Linear warm-up steps. [100]")
@click.option("--steps", type=int, default=None, help="Training steps. [1000]")
@click.option("--max-minutes", type=float, default=None,
              help="Wall-clock budget; training stops when it is spent and the schedule follows time.")
@click.option("--alpha", type=float, default=None, help="Triplet margin. [0.2]")
@click.option("--mining", type=click.Choice(["semihard", "hard", "none"]), default=None,
              help="Online negative mining inside each triplet batch. [semihard]")
@click.option("--pair-distance", type=click.Choice(["l1", "chi2"]), default=None,
              help="DeepFace pair features: weighted |f1-f2| or chi-square. [l1]")
@click.option("--margin-kind", type=click.Choice(["cosface", "arcface"]), default=None, help="[cosface]")
@click.option("--margin", type=float, default=None, help="Margin (CosFace 0.35, ArcFace 0.5 by default).")
@click.option("--scale", type=float, default=None, help="Margin-softmax scale s. [30]")
@click.option("--augment/--no-augment", default=None, help="Flip, crop and colour augmentation. [on]")
@click.option("--eval-every", type=int, default=None, help="Verify on dev pairs every N steps. [200]")
@click.option("--patience", type=int, default=None, help="Stop after N evaluations without gain (0: never). [0]")
@click.option("--seed", type=int, default=None, help="Seed for every random choice. [0]")
@click.option("--teacher", type=click.Path(exists=True, dir_okay=False), default=None,
              help="distill: the teacher's embeddings (teacher.npz). [DATA/teacher.npz]")
@click.option("--distill-relation", type=float, default=None,
              help="distill: weight of matching the in-batch similarity matrix. [1.0]")
@click.option("--distill-margin-weight", type=float, default=None,
              help="distill: weight of a CosFace loss on the known identities (0: off). [0]")
@click.option("--blur", type=float, default=None, help="Chance of a Gaussian blur per training image. [0]")
@click.option("--threads", type=int, default=None, help="Torch CPU threads. [1]")
@click.option("--device", default=None, help="auto (a GPU when torch sees one), cpu or cuda. [auto]")
@click.option("--resume", type=click.Path(exists=True), default=None, help="Resume from a run dir or checkpoint.pt.")
@click.option("--progress/--no-progress", default=None, help="Progress bar. [on]")
@click.option("--snapshot-at", default=None, metavar="N,N,...",
              help="Sample counts at which to snapshot the embeddings of up to 12 training people (t-SNE, "
                   "boxplot, medoid table) into OUT/snapshots, e.g. 0,8000,16000 (the study's figures).")
@click.option("--snapshot-every", type=click.IntRange(1), default=None,
              help="Also snapshot every this many samples.")
def train_cmd(config, resume, exclude_folds, dev_folds, net_args, snapshot_at, snapshot_every, **opts) -> None:
    """Train a face embedder (triplet, pair or margin-softmax) and write it with its model card."""
    from training.trainer import TrainConfig, Trainer, config_from_file

    opts = {k: v for k, v in opts.items() if v is not None}
    if net_args:
        parsed = {}
        for item in net_args:
            key, sep, val = item.partition("=")
            if not sep or not key:
                raise click.BadParameter(f"{item!r}: expected KEY=VALUE", param_hint="--net-arg")
            try:
                parsed[key] = json.loads(val)
            except json.JSONDecodeError:
                parsed[key] = val
        opts["net_args"] = parsed
    if exclude_folds is not None:
        opts["exclude_folds"] = _folds(exclude_folds)
    if dev_folds is not None:
        opts["dev_folds"] = _folds(dev_folds)
    cfg = config_from_file(config, **opts) if config else TrainConfig(**opts)
    callbacks = []
    if snapshot_at or snapshot_every:
        from training.analysis.snapshots import TrainerSnapshots

        try:
            at = [int(x) for x in snapshot_at.split(",") if x.strip()] if snapshot_at else []
        except ValueError:
            raise click.BadParameter(f"{snapshot_at!r}: expected sample counts like 0,8000,16000",
                                     param_hint="--snapshot-at") from None
        callbacks.append(TrainerSnapshots(at, Path(cfg.out) / "snapshots", every=snapshot_every))
    summary = Trainer(cfg, resume=resume, callbacks=callbacks).fit()
    dev = summary.get("dev") or {}
    msg = (f"trained {cfg.network}/{cfg.method}: {summary['step']} steps, {summary['samples_seen']} samples, "
           f"{summary['elapsed_s'] / 60:.1f} min ({summary['stop_reason']})")
    if dev:
        msg += f"; dev accuracy {dev['accuracy']:.4f} AUC {dev['auc']:.4f}"
    click.echo(msg)
    click.echo(f"embedder: {Path(cfg.out) / 'model.pt'}")


embed.add_command(train_cmd, "train")


@click.command()
@click.argument("model")
@click.option("--pairs", "pairs_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="LFW-format pairs file.")
@click.option("--data", default=None, help="Faces root the pairs resolve against (a <person>/ folder tree or a "
              "built dataset) [the pairs file's folder].")
@click.option("--folds", default=None, help="Only these folds of the pairs file, e.g. 5 [all].")
@click.option("--kfold", type=int, default=10, show_default=True,
              help="Folds for threshold selection when the selection holds a single fold of the file.")
@click.option("--far", type=float, default=1e-3, show_default=True, help="FAR for the TAR@FAR figure.")
@click.option("--identification/--no-identification", default=True, show_default=True,
              help="Also rank-1 identification: all images of the pairs' people, one per person as gallery.")
@click.option("--flip/--no-flip", default=None, help="Flip test-time augmentation [as the model card says].")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None,
              help="Write the full report (with the ROC curve) here.")
@click.option("--roc-csv", type=click.Path(dir_okay=False), default=None, help="Write far,tar,threshold rows here.")
@click.option("--crop-fraction", type=float, default=None,
              help="Override the model card's centre crop share (e.g. a raw-LFW model on builder crops: 0.72).")
@click.option("--threads", type=int, default=1, show_default=True, help="Torch CPU threads.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the gallery/probe split.")
@click.option("--detector", default="default", show_default=True,
              help="For models that want a landmark chip (dlib-resnet): the detector that finds the face in each "
                   "raw photo before it is cut to the model's chip, as a gallery would.")
@click.option("--backend", type=click.Choice(["auto", "torch", "onnx"]), default="auto", show_default=True,
              help="Run the embedder in torch or through onnxruntime.")
def evaluate(model, pairs_path, data, folds, kfold, far, identification, flip, json_out, roc_csv, crop_fraction,
             threads, seed, detector, backend):
    """Judge an embedder MODEL (`iznet models list`: default, dlib-resnet, a trained model's folder, models/NAME):
    LFW-protocol verification accuracy (threshold chosen on the other folds, mean and std), ROC AUC, TAR@FAR
    and rank-1 identification.

    Models trained on centre crops see each photo's centre (their card's crop fraction). Models with a
    landmark chip (dlib-resnet) see what a gallery would: DETECTOR finds the face, the model's own alignment
    cuts its chip."""
    import numpy as np

    from iznet.errors import UserInputError
    from iznet.evaluation.verification import (gallery_probe_split, pair_distances, rank1_identification,
                                               verification_report)
    from iznet.imageio import read_image
    from iznet.registry import create_detector, create_embedder, detector_threads
    from training.data import list_people, load_pairs, resolve_faces_root

    import torch

    torch.set_num_threads(max(1, threads))
    extra = {k: v for k, v in (("flip_tta", flip), ("crop_fraction", crop_fraction)) if v is not None}
    emb = create_embedder(model, backend, threads=threads, **extra)
    chip = getattr(emb, "chip", None)
    chip_report = None
    if chip is not None and chip.kind != "box":
        from iznet.evaluation.photos import photo_chips

        det = create_detector(detector, **detector_threads(detector, threads))

        def load_all(paths):
            nonlocal chip_report
            crops, chip_report = photo_chips(paths, chip, det, progress=True)
            return crops
    else:
        def load_all(paths):
            return [read_image(p) for p in paths]
    pairs = load_pairs(pairs_path)
    sel = _folds(folds)
    if sel:
        pairs = pairs.select(set(sel))
        if not len(pairs):
            raise UserInputError(f"{pairs_path}: no pairs in folds {sel}")
    root, _ = resolve_faces_root(data or Path(pairs_path).parent)
    uniq = sorted(set(pairs.left) | set(pairs.right))
    missing = [u for u in uniq if not (root / u).is_file()]
    if missing:
        raise UserInputError(f"{len(missing)} pair images missing under {root}, e.g. {missing[0]}")
    vec = emb.embed(load_all([root / u for u in uniq]))
    pos = {u: i for i, u in enumerate(uniq)}
    d = pair_distances(vec[[pos[a] for a in pairs.left]], vec[[pos[b] for b in pairs.right]])
    fold_ids = pairs.fold if len(np.unique(pairs.fold)) > 1 else kfold
    rep = verification_report(d, pairs.same, fold_ids, far)
    rep["model"] = emb.version
    if chip_report is not None:
        rep["preprocess"] = {"chip": str(chip), "detector": det.version, **chip_report.to_json()}
    rep["pairs_file"] = str(pairs_path)
    rep["folds_used"] = sel or "all"
    if identification:
        people = sorted(pairs.people())
        allp = list_people(root)
        paths, labels = [], []
        for p in people:
            for f in allp.get(p, []):
                paths.append(f)
                labels.append(p)
        g, pr = gallery_probe_split(labels, seed)
        single = [i for i, lab in enumerate(labels) if labels.count(lab) == 1]
        gal_idx = np.concatenate([g, np.asarray(single, np.int64)])  # one-image people are distractors
        if len(pr):
            v = emb.embed(load_all(paths))
            lab = np.asarray(labels)
            rep["identification"] = rank1_identification(v[gal_idx], lab[gal_idx], v[pr], lab[pr])
    roc = rep.pop("roc")
    click.echo(f"model {emb.version['name']} {emb.version['version']} ({emb.version['digest'][:19]})")
    click.echo(f"pairs {rep['pairs']} ({rep['same_pairs']} same / {rep['different_pairs']} different), "
               f"{rep['folds']}-fold")
    click.echo(f"accuracy  {rep['accuracy']:.4f} +- {rep['accuracy_std']:.4f}  (threshold ~{rep['threshold']:.3f} "
               f"on squared L2)")
    click.echo(f"AUC       {rep['auc']:.4f}")
    click.echo(f"TAR@FAR={far:g}  {rep['tar_at_far']:.4f}  (FAR resolution {rep['far_resolution']:.4g})")
    if "preprocess" in rep:
        pp = rep["preprocess"]
        click.echo(f"chips     {pp['chip']} by {pp['detector']['name']}: {pp['aligned']}; no face found in "
                   f"{pp['no_face_found']} of {pp['photos']} photos (a centred box stood in)")
    if "identification" in rep:
        i = rep["identification"]
        click.echo(f"rank-1    {i['rank1']:.4f}  ({i['probes']} probes, gallery {i['gallery']})")
    if json_out:
        Path(json_out).write_text(json.dumps({**rep, "roc": roc}, indent=2))
    if roc_csv:
        rows = ["far,tar,threshold"] + [f"{a},{b},{c}" for a, b, c in zip(roc["far"], roc["tar"], roc["threshold"])]
        Path(roc_csv).write_text("\n".join(rows) + "\n")
