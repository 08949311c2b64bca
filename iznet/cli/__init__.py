"""The ``iznet`` command: one command, a subcommand per task.

Subcommands live in their own modules and are imported only when used (``LazyGroup``), so ``iznet --help``
answers at once without loading torch. To add one, write a click command or group and list it in
``COMMANDS`` as ``"name": "module:attribute"``.

User mistakes (:class:`iznet.errors.IZNetError`) print one line ``error: ...`` and exit with status 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import importlib
import sys

import click

from iznet import __version__
from iznet.errors import IZNetError

COMMANDS: dict[str, str] = {
    "analyze": "iznet.cli.analyze:analyze",
    "data": "iznet.cli.data:data",
    "demo": "iznet.cli.demo:demo",
    "embed": "iznet.cli.embed:embed",
    "evaluate": "iznet.cli.embed:evaluate",
    "gallery": "iznet.cli.gallery:gallery",
    "detect": "iznet.cli.detect:detect",
    "jobs": "iznet.cli.jobs:jobs",
    "label": "iznet.cli.up:label",
    "models": "iznet.cli.models:models",
    "up": "iznet.cli.up:up",
    "export": "iznet.cli.export:export",
    "triton": "iznet.cli.triton:triton",
    "vectors": "iznet.cli.triton:vectors",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def __init__(self, *args, lazy_commands: dict[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy_commands:
            module_name, attr = self.lazy_commands[name].split(":")
            return getattr(importlib.import_module(module_name), attr)
        return super().get_command(ctx, name)


@click.group(
    cls=LazyGroup,
    lazy_commands=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "IZNET", "max_content_width": 100},
)
@click.version_option(__version__, prog_name="iznet")
def cli() -> None:
    """IZ*Net: find every face in a photo and name it.

    Build face datasets, train and judge detectors and embedders, enroll people, and label photos,
    locally or through the gRPC services. Every option can also be set from the environment as
    IZNET_<COMMAND>_<OPTION> (e.g. IZNET_DATA_BUILD_SIZE=112); `iznet COMMAND --help` explains each.
    """


def main(argv: list[str] | None = None) -> int:
    try:
        cli.main(args=argv, prog_name="iznet", standalone_mode=False)
    except IZNetError as exc:
        click.echo(f"error: {exc}", err=True)
        return 2
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
