"""``iznet demo``: the main job on the embedded default, end to end on one machine."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option("--data", type=click.Path(path_type=Path), default=None,
              help="A folder of real photos, one sub-folder per person: the demo trains on it and enrolls it. "
                   "Default: the team's shared photos (../shared/data) when present, otherwise generated people.")
@click.option("--group", type=click.Path(path_type=Path), default=None,
              help="A photo to label. Default: with --data, a mosaic of one held-out photo of each of a few of "
                   "its people; with shared data, the face_recognition group photos; else generated group photos.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("demo-out"), show_default=True,
              help="Where the demo leaves its dataset, model, gallery, annotated photos, JSON and report.")
@click.option("--size", type=click.Choice(["full", "quick"]), default="full", show_default=True,
              help="full: every stage done properly (about ten minutes on 2 cores); quick: smaller data and a "
                   "short training run, for CI and tests.")
def demo(data: Path | None, group: Path | None, out: Path, size: str) -> None:
    """Run the whole system on one machine: build a face dataset, train an embedder, enroll a gallery,
    start the local gRPC stack, label a group photo through the gateway, and write the annotated photo, its
    JSON and the analysis report into OUT."""
    from services.demo import run_demo

    run_demo(data=data, out=out, group=group, size=size)
