"""``iznet data``: build and inspect face datasets."""

from __future__ import annotations

import json
from pathlib import Path

import click

from iznet.errors import UserInputError
from iznet.sizes import CROP_SIZE


def _ratios(_ctx, _param, value: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(x) for x in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected three numbers like 0.8,0.1,0.1") from None
    if len(parts) != 3:
        raise click.BadParameter(f"{value!r}: expected three numbers (train,dev,test)")
    return parts  # type: ignore[return-value]


@click.group()
def data() -> None:
    """Build face datasets from folders of photos, and inspect them."""


@data.command()
@click.argument("src", type=click.Path(path_type=Path, file_okay=False))
@click.argument("dst", type=click.Path(path_type=Path, file_okay=False))
@click.option("--teacher", default="default", show_default=True,
              help="Face detector used to find faces: default (mtcnn, whose 5 landmarks level the eyes), haar, "
                   "ultralight-320, ultralight-640, an .onnx path or a trained detector (`iznet models list`).")
@click.option("--size", type=click.IntRange(16, 1024), default=CROP_SIZE, show_default=True,
              help="Side of the square aligned face crops, in pixels.")
@click.option("--margin", type=click.FloatRange(0, 2), default=0.2, show_default=True,
              help="Context added on each side of the face box, as a fraction of its side.")
@click.option("--align/--no-align", default=True, show_default=True,
              help="Level the eyes when they can be found (otherwise a square crop around the box).")
@click.option("--min-face", type=click.IntRange(1), default=20, show_default=True,
              help="Ignore detected faces smaller than this many pixels across.")
@click.option("--dedup-bits", type=int, default=2, show_default=True,
              help="Photos of one person whose perceptual hashes differ in at most this many of 64 bits are "
                   "near-duplicates; only the first is kept. -1 turns deduplication off.")
@click.option("--split-by", type=click.Choice(["image", "identity"]), default="image", show_default=True,
              help="Split each person's photos (image), or split the people (identity: dev/test people are "
                   "never seen in train).")
@click.option("--ratios", default="0.8,0.1,0.1", show_default=True, callback=_ratios,
              help="Train,dev,test shares.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the split and the pairs.")
@click.option("--folds", type=click.IntRange(1), default=10, show_default=True,
              help="Identity-disjoint folds in the dev and test pairs files.")
@click.option("--pairs-per-fold", type=click.IntRange(1), default=300, show_default=True,
              help="Same-person pairs (and as many different-person pairs) per fold, at most.")
@click.option("--max-pixels", type=click.IntRange(1), default=64_000_000, show_default=True,
              help="Refuse photos larger than this many pixels (listed as unreadable).")
@click.option("--fallback-center", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="For sets of pre-cropped portraits such as LFW: when no face is found, use a centred square "
                   "of this fraction of the shorter side (LFW: 0.46) instead of skipping. 0 = off.")
@click.option("--workers", type=click.IntRange(0), default=0, show_default=True,
              help="Processes to use; 0 means one per core.")
@click.option("--rebuild", is_flag=True, help="Forget DST's manifest and build it again from scratch.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def build(src: Path, dst: Path, teacher: str, size: int, margin: float, align: bool, min_face: int,
          dedup_bits: int, split_by: str, ratios, seed: int, folds: int, pairs_per_fold: int, max_pixels: int,
          fallback_center: float, workers: int, rebuild: bool, quiet: bool) -> None:
    """Turn SRC (one folder of photos per person) into an aligned face dataset in DST.

    Each photo: detect faces with the teacher, keep the person's face (the largest and most central, the
    choice recorded), align and crop it. Near-duplicate photos are dropped; faces are split into
    train/dev/test with a fixed seed, and dev/test verification pairs are written in LFW's pairs.txt
    format. Re-running on a grown SRC only processes the new photos; recorded splits never change.
    Unreadable photos and photos without a face are listed with the reason and skipped.
    """
    from iznet.data.builder import BuildConfig, build_dataset

    if src.resolve() == dst.resolve():
        raise UserInputError("DST must be another folder than SRC")
    from iznet.registry import detector_spec

    cfg = BuildConfig(teacher=detector_spec(teacher), size=size, margin=margin, align=align, min_face=min_face,
                      dedup_bits=dedup_bits, split_by=split_by, ratios=ratios, seed=seed, folds=folds,
                      pairs_per_fold=pairs_per_fold, max_pixels=max_pixels, fallback_center=fallback_center)
    report = build_dataset(src, dst, cfg, workers=workers, rebuild=rebuild, progress=not quiet)
    c = report.counts
    click.echo(f"{report.dst}: {report.scanned} photos, {report.processed} processed in {report.seconds:.1f}s")
    click.echo(f"  kept {c['kept']} faces of {report.identities} people "
               f"(train {report.by_split['train']}, dev {report.by_split['dev']}, test {report.by_split['test']}); "
               f"skipped {c['skipped']}; near-duplicates {c['duplicate']}")
    if report.by_reason:
        click.echo("  not kept, by reason: " + ", ".join(f"{k} {v}" for k, v in report.by_reason.items()))
    for source, why in report.skipped[:10]:
        click.echo(f"    {source}: {why}")
    if len(report.skipped) > 10:
        click.echo(f"    ... and {len(report.skipped) - 10} more (status and reason of each in manifest.jsonl)")
    if report.missing_sources:
        click.echo(f"  {report.missing_sources} recorded photos are no longer in SRC (their faces are kept)")
    for split, p in report.pairs.items():
        where = p["file"] or "no file"
        click.echo(f"  {split} pairs: {where} ({p['note']})")


@data.command()
@click.argument("dataset", type=click.Path(path_type=Path, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the dataset's record (dataset.json) as JSON.")
def info(dataset: Path, as_json: bool) -> None:
    """Summarise a built dataset: configuration, counts by split and reason, pairs."""
    from iznet.data.dataset import FaceDataset

    ds = FaceDataset(dataset)
    if as_json:
        click.echo(json.dumps(ds.info, indent=2))
        return
    click.echo(repr(ds))
    click.echo("  config: " + ", ".join(f"{k}={v}" for k, v in ds.config.items()))
    for split in ("train", "dev", "test"):
        click.echo(f"  {split}: {len(ds.faces(split))} faces of {len(ds.identities(split))} people")
    click.echo("  not kept: " + (", ".join(f"{k} {v}" for k, v in ds.info.get("by_reason", {}).items()) or "none"))
    for split, p in ds.info.get("pairs", {}).items():
        click.echo(f"  {split} pairs: {p.get('file') or 'none'} ({p.get('note')})")
