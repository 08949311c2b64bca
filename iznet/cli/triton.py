"""``iznet triton setup|serve|status|activate`` and ``iznet vectors``: run a local Triton on the CPU, check a
Triton's health, switch the served version, and embed face crops through any backend."""

from __future__ import annotations

import json
from pathlib import Path

import click

from services.options import triton_options

BACKEND_HELP = "Embedding backend: torch (in-process), onnx (onnxruntime in-process) or triton (remote, gRPC)."


@click.group()
def triton() -> None:
    """NVIDIA Triton: a local CPU server for exported embedders, health checks, version switches."""


@triton.command("setup")
@click.option("--venv", type=click.Path(file_okay=False), default=None,
              help="Where to make the Triton virtualenv. [$IZNET_TRITON_VENV or .venv-triton in the checkout]")
def setup_cmd(venv) -> None:
    """Install nvidia-pytriton's CPU tritonserver (with numpy<2 and onnxruntime) in its own virtualenv."""
    from services.triton_local import setup_venv

    click.echo(f"Triton venv ready: {setup_venv(Path(venv) if venv else None, quiet=False)}")


@triton.command("serve")
@click.option("--store", type=click.Path(file_okay=False), default=None,
              help="Artifact store whose triton/ repository is served. [$IZNET_STORE or ~/.iznet]")
@click.option("--repository", type=click.Path(file_okay=False), default=None,
              help="Serve this Triton model repository instead of <store>/triton.")
@click.option("--grpc-port", type=int, default=None, help="gRPC port on 127.0.0.1 [a free one].")
@click.option("--venv", type=click.Path(file_okay=False), default=None, help="The Triton virtualenv.")
@click.option("--config-name", default="python_cpu", show_default=True,
              help="Model config to use: python_cpu (python backend over onnxruntime; what a CPU-only "
                   "tritonserver can run) or '' for config.pbtxt (the ONNX Runtime backend).")
def serve_cmd(store, repository, grpc_port, venv, config_name) -> None:
    """Run tritonserver (from the pytriton venv) on the store's exported embedders until Ctrl-C."""
    from iznet.config import load_settings
    from services.triton_local import serve_forever

    repo = Path(repository) if repository else load_settings(store=store).store / "triton"
    serve_forever(repo, grpc_port=grpc_port, venv=Path(venv) if venv else None,
                  model_config_name=config_name or None, echo=click.echo)


@triton.command("status")
@triton_options
def status_cmd(triton_url, triton_model, triton_version, triton_timeout) -> None:
    """Is Triton up and serving the embedder? Prints its model card; exits 2 with the reason when not."""
    from iznet.embedding.backends import make_backend

    emb = make_backend("triton", triton_url=triton_url, triton_model=triton_model,
                        triton_version=triton_version, triton_timeout=triton_timeout or 5.0)
    try:
        click.echo(f"ready: {emb.model_name} at {emb.url}: {emb.version['name']} {emb.version['version']} "
                   f"({emb.version['digest'][:19]}), {emb.input_size}px -> {emb.dim}-d, max batch {emb.max_batch}")
    finally:
        emb.close()


@triton.command("activate")
@click.argument("name")
@click.argument("version", type=int)
@click.option("--store", type=click.Path(file_okay=False), default=None, help="Artifact store. [$IZNET_STORE]")
def activate_cmd(name, version, store) -> None:
    """Serve exported VERSION of NAME (e.g. roll back): rewrite its configs and CURRENT; a polling Triton
    switches by itself."""
    from iznet.config import load_settings
    from iznet.triton.repository import activate

    activate(load_settings(store=store).store, name, version)
    click.echo(f"{name}: serving version {version}")


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--backend", type=click.Choice(["torch", "onnx", "triton"]), default=None,
              envvar="IZNET_EMBED_BACKEND", help=BACKEND_HELP + " [torch]")
@click.option("--model", default=None, envvar="IZNET_EMBED_MODEL",
              help="torch: a trained model dir; onnx: model.onnx, an export's version dir, or "
                   "<store>/triton/<name> (its CURRENT version). Not used by triton.")
@triton_options
@click.option("--threads", type=int, default=1, show_default=True, help="CPU threads (torch, onnx).")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write the vectors here (.npy).")
def vectors(images, backend, model, triton_url, triton_model, triton_version, triton_timeout, threads, out) -> None:
    """Embed face crops (IMAGES) through the chosen backend; print each vector's first values and the model."""
    import numpy as np

    from iznet.embedding.backends import make_backend
    from iznet.imageio import read_image

    crops = [read_image(p) for p in images]
    emb = make_backend(backend, model, threads=threads, triton_url=triton_url, triton_model=triton_model,
                        triton_version=triton_version, triton_timeout=triton_timeout)
    try:
        vecs = emb.embed(crops)
    finally:
        emb.close()
    if out:
        np.save(out, vecs)
    click.echo(json.dumps({"backend": emb.backend, "model": emb.version, "n": len(vecs), "dim": int(vecs.shape[1]),
                           "out": out}))
    for p, v in zip(images, vecs):
        click.echo(f"{p}\t" + " ".join(f"{x:+.4f}" for x in v[:6]) + " ...")
