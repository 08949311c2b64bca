"""The demo: the main job on the embedded default, end to end on one machine, with progress shown.

Stages land with their issues; today: photos (real or generated) -> an aligned face dataset.
"""

from __future__ import annotations

from pathlib import Path

import click

from iznet.config import shared_data_dir


def pick_photos(data: Path | None, out: Path) -> tuple[Path, str]:
    """The photos to run on and where they came from: the user's, the team's shared ones, or generated."""
    if data is not None:
        return data, "your photos"
    shared = shared_data_dir() / "att_orl"
    if shared.is_dir():
        return shared, f"the shared AT&T faces ({shared})"
    from iznet.synthetic import make_people

    photos = out / "photos"
    if not photos.is_dir():
        make_people(photos, people=8, photos=12, seed=0)
    return photos, f"8 generated people ({photos}); give DATA=... for real photos"


def run_demo(data: Path | None, out: Path) -> None:
    from iznet.data.builder import BuildConfig, build_dataset

    out.mkdir(parents=True, exist_ok=True)
    photos, origin = pick_photos(data, out)
    click.echo(f"[1/1] building a face dataset from {origin}")
    report = build_dataset(photos, out / "dataset", BuildConfig(split_by="identity", ratios=(0.6, 0.2, 0.2)))
    c = report.counts
    click.echo(f"      {c['kept']} faces of {report.identities} people kept, {c['skipped']} skipped, "
               f"{c['duplicate']} near-duplicates, in {report.seconds:.1f}s -> {out / 'dataset'}")
    click.echo("Training, enrolment, serving and labelling join the demo as they land (see README, Status).")
