"""``iznet models``: every detector and embedder the registry knows, with its card."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.group()
def models() -> None:
    """The models: imported (dlib's ResNet, MTCNN), trained here, teachers and baselines."""


@models.command("list")
@click.option("--store", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Also list the trained models published in this store (default ~/.iznet; env IZNET_STORE).")
@click.option("--json", "as_json", is_flag=True, help="Print every card as JSON.")
def list_cmd(store: Path | None, as_json: bool) -> None:
    """One line per model: name, kind, source, whether it is the default and usable here, and its summary."""
    from iznet.registry import list_models

    cards = list_models(store)
    if as_json:
        click.echo(json.dumps(cards, indent=2, default=str))
        return
    for c in cards:
        flag = "default" if c["default"] else ""
        state = "" if c["available"] else f"  [not available: {c.get('unavailable')}]"
        click.echo(f"{c['name']:24s} {c['kind']:9s} {c['source']:9s} {flag:8s} {c.get('summary', '')}{state}")
    click.echo("`iznet models list --json` prints the cards (licence, origin, digests, figures measured here)")
