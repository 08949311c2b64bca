"""Command-line options shared by the servers and the ``iznet`` commands that pick an embedding backend."""

from __future__ import annotations

import click


def triton_options(f):
    """The Triton client flags (shared with other commands that pick an embedding backend)."""
    f = click.option("--triton-timeout", type=float, default=None, envvar="IZNET_TRITON_TIMEOUT",
                     help="Seconds per Triton request. [30]")(f)
    f = click.option("--triton-version", default=None, envvar="IZNET_TRITON_VERSION",
                     help="Pin a model version on Triton [the one it serves].")(f)
    f = click.option("--triton-model", default=None, envvar="IZNET_TRITON_MODEL",
                     help="Model name in Triton's repository. [iznet_embedder]")(f)
    f = click.option("--triton-url", default=None, envvar="IZNET_TRITON_URL",
                     help="Triton's gRPC endpoint host:port. [127.0.0.1:8001]")(f)
    return f
