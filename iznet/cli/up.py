"""``iznet up``: the whole service stack on this machine, and ``iznet label --server``: a photo through it."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path

import click

from iznet.config import load_settings
from iznet.errors import NotFoundError


@click.command()
@click.option("--store", type=click.Path(file_okay=False), default=None,
              help="Artifact store with the models and galleries (default: $IZNET_STORE or ~/.iznet).")
@click.option("--gallery", default="default", show_default=True, help="Default gallery (galleries/<name>).")
@click.option("--model", default="standin-pixels", show_default=True, help="Embedding model (models/<name>).")
@click.option("--detector", default="haar", show_default=True,
              help="Detector: haar, ultralight-320, ultralight-640 or an .onnx path.")
@click.option("--port", default=0, type=int, show_default=True, help="Gateway gRPC port; 0 picks a free one.")
@click.option("--api-key", "api_keys", multiple=True, help="Require this x-api-key on gateway calls (repeatable).")
@click.option("--poll", default=1.0, show_default=True, type=float,
              help="Seconds between checks for newly published model/gallery versions.")
@click.option("--init-standin", is_flag=True,
              help="If the store has no such model, publish the STAND-IN embedder under --model first.")
@click.option("--log-dir", type=click.Path(file_okay=False), default=None,
              help="Where each process logs (default: <store>/logs).")
def up(store, gallery, model, detector, port, api_keys, poll, init_standin, log_dir):
    """Start the detection, embedding and gallery services and the Ray Serve gateway on loopback.

    Prints where each listens (gRPC and Prometheus /metrics), then waits; Ctrl-C (or SIGTERM) stops them all
    gracefully. Label through it with `iznet label --server ADDRESS PHOTO`.
    """
    from iznet.store import ArtifactStore
    from services.stack import Stack, StackConfig

    settings = load_settings(store=store)
    artifacts = ArtifactStore(settings.store)
    if model not in artifacts.names("models"):
        if not init_standin:
            raise NotFoundError(f"no model {model!r} in the store at {settings.store} (publish one, or pass "
                                "--init-standin to publish the stand-in embedder)")
        from iznet.standin import publish_standin_model

        version = publish_standin_model(artifacts, model)
        click.echo(f"published the STAND-IN embedder as models/{model} v{version}")
    if gallery not in artifacts.names("galleries"):
        raise NotFoundError(f"no gallery {gallery!r} in the store at {settings.store}: enroll people first")
    stack = Stack(StackConfig(store=settings.store, gallery=gallery, model=model, detector=detector,
                              api_keys=list(api_keys), poll_s=poll, gateway_port=port,
                              log_dir=Path(log_dir) if log_dir else None))
    stopping = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stopping.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        click.echo("starting the services and the gateway (Ray takes a while)...")
        stack.start()
        for name, info in stack.addresses().items():
            metrics = f"  metrics http://{info['address'].rsplit(':', 1)[0]}:{info['metrics_port']}/metrics" \
                if "metrics_port" in info else ""
            click.echo(f"{name:10s} {info['address']}{metrics}")
        click.echo(f"logs in {stack.log_dir}")
        click.echo(f"ready: iznet label --server {stack.gateway} PHOTO   (Ctrl-C stops everything)")
        while not stopping.wait(1.0):
            dead = [n for n, p in stack.procs.items() if not p.alive()]
            if dead:
                click.echo(f"{', '.join(dead)} exited unexpectedly (see {stack.log_dir}); stopping", err=True)
                break
    finally:
        click.echo("stopping...")
        codes = stack.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
        click.echo("stopped: " + ", ".join(f"{n} ({c})" for n, c in codes.items()))


@click.command()
@click.argument("photos", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--server", required=True, help="The gateway, HOST:PORT (as `iznet up` prints it).")
@click.option("--gallery", default="", help="Gallery to search (default: the server's).")
@click.option("--annotate-to", type=click.Path(file_okay=False), default=None,
              help="Write each annotated photo (red boxes and names) into this folder.")
@click.option("--threshold", default=0.0, type=float, help="Unknown threshold override (0: the gallery's).")
@click.option("--api-key", default=None, help="API key, when the gateway requires one.")
@click.option("--timeout", default=60.0, show_default=True, type=float, help="Seconds per photo.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per photo.")
def label(photos, server, gallery, annotate_to, threshold, api_key, timeout, as_json):
    """Label photos through a running gateway: every face boxed and named.

    SEAM: the in-process form (`iznet label PHOTO` without --server) belongs to the gallery/pipeline issue.
    """
    from iznet.client import GatewayClient

    out = Path(annotate_to) if annotate_to else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    with GatewayClient(server, api_key=api_key, timeout=timeout) as gw:
        for result in gw.label_many(photos, gallery=gallery, threshold=threshold, annotate=out is not None):
            if out and result.annotated:
                (out / (Path(result.image_id).stem + ".jpg")).write_bytes(result.annotated)
            if as_json:
                click.echo(json.dumps({"photo": result.image_id, "error": result.error, "faces": [
                    {"box": [round(v, 1) for v in f.box], "name": f.name, "score": round(f.score, 4),
                     "distance": round(f.distance, 4), "threshold": f.threshold} for f in result.faces],
                    "embedder": result.embedder.digest, "gallery": f"{result.gallery.name} v{result.gallery.version}",
                    "timings_ms": {k: round(v, 1) for k, v in result.timings_ms.items()}}))
            elif result.error:
                click.echo(f"{result.image_id}: error: {result.error}")
            else:
                faces = ", ".join(f"{f.name} ({f.score:.2f})" for f in result.faces) or "no faces"
                click.echo(f"{result.image_id}: {faces}  [{result.gallery.name} v{result.gallery.version}, "
                           f"{result.timings_ms.get('total', 0):.0f} ms]")
