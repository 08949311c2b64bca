"""``iznet demo``: the main job on the embedded default, end to end on one machine."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option("--data", type=click.Path(path_type=Path), default=None,
              help="A folder of real photos, one sub-folder per person. Default: ../shared/data/att_orl when "
                   "present, otherwise a generated set of people.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("demo-out"), show_default=True,
              help="Where the demo leaves its dataset, models, gallery, annotated photo and report.")
def demo(data: Path | None, out: Path) -> None:
    """Run the whole system on one machine: build a dataset, and (as the later stages land) train,
    enroll, serve and label a group photo."""
    from iznet.demo import run_demo

    run_demo(data=data, out=out)
