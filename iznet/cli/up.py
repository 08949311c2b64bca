"""``iznet up``: the whole service stack on this machine, and ``iznet label --server``: a photo through it."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path

import click

from iznet.config import load_settings


@click.command()
@click.option("--store", type=click.Path(file_okay=False), default=None,
              help="Artifact store with the models and galleries (default: $IZNET_STORE or ~/.iznet).")
@click.option("--gallery", default="default", show_default=True, help="Default gallery (galleries/<name>).")
@click.option("--model", default=None,
              help="Embedding model: models/<NAME> in the store (switched when a new version is published) or an "
                   "embedder (`iznet models list`: dlib-resnet, baseline-lbp, a trained model's folder). Default: "
                   "the gallery's model.")
@click.option("--detector", default=None,
              help="Detector (`iznet models list`: mtcnn, haar, ultralight-320/640, an .onnx or trained .pt). "
                   "Default: the gallery's.")
@click.option("--port", default=0, type=int, show_default=True, help="Gateway gRPC port; 0 picks a free one.")
@click.option("--api-key", "api_keys", multiple=True, help="Require this x-api-key on gateway calls (repeatable).")
@click.option("--poll", default=1.0, show_default=True, type=float,
              help="Seconds between checks for newly published model/gallery versions.")
@click.option("--log-dir", type=click.Path(file_okay=False), default=None,
              help="Where each process logs (default: <store>/logs).")
def up(store, gallery, model, detector, port, api_keys, poll, log_dir):
    """Start the detection, embedding and gallery services and the Ray Serve gateway on loopback.

    Prints where each listens (gRPC and Prometheus /metrics), then waits; Ctrl-C (or SIGTERM) stops them all
    gracefully. Label through it with `iznet label --server ADDRESS PHOTO`.
    """
    from iznet.gallery import GalleryStore
    from services.stack import Stack, StackConfig

    settings = load_settings(store=store)
    g = GalleryStore(settings.store).load(gallery)  # NotFoundError naming the galleries there are
    model = model or g.model.get("spec") or g.model.get("name")
    if model.startswith("models/"):  # the embedding service follows models/NAME's CURRENT by name
        model = model.split("/")[1]
    detector = detector or g.detector
    stack = Stack(StackConfig(store=settings.store, gallery=gallery, model=model, detector=detector,
                              api_keys=list(api_keys), poll_s=poll, gateway_port=port,
                              log_dir=Path(log_dir) if log_dir else None))
    stopping = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stopping.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        click.echo("starting the services and the gateway (Ray takes a while)...")
        stack.start()
        from services.web import start_web  # the web page (issue 21): listed below, stopped in `finally`
        start_web(stack)
        for name, info in stack.addresses().items():
            metrics = f"  metrics http://{info['address'].rsplit(':', 1)[0]}:{info['metrics_port']}/metrics" \
                if "metrics_port" in info else ""
            click.echo(f"{name:10s} {info['address']}{metrics}")
        if "web" in stack.procs:
            click.echo(f"web page   {stack.procs['web'].info['url']}")
        click.echo(f"logs in {stack.log_dir}")
        click.echo(f"ready: iznet label --server {stack.gateway} PHOTO   (Ctrl-C stops everything)")
        while not stopping.wait(1.0):
            dead = [n for n, p in stack.procs.items() if not p.alive()]
            if dead:
                click.echo(f"{', '.join(dead)} exited unexpectedly (see {stack.log_dir}); stopping", err=True)
                break
    finally:
        click.echo("stopping...")
        web_code = stack.procs["web"].stop() if "web" in stack.procs else None
        codes = {**stack.stop(), **({"web": web_code} if "web" in stack.procs else {})}
        for s, handler in previous.items():
            signal.signal(s, handler)
        click.echo("stopped: " + ", ".join(f"{n} ({c})" for n, c in codes.items()))


def _label_remote(photos, server, gallery, out, threshold, min_face, min_score, api_key, timeout) -> None:
    """Label photos through a running gateway; prints and writes what the in-process ``iznet label`` does."""
    from iznet.client import GatewayClient
    from iznet.errors import UserInputError

    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    results, failed, readable = [], 0, []
    for photo in photos:  # a photo that cannot be read is reported; the others are still labelled
        try:
            readable.append((photo, Path(photo).read_bytes()))
        except OSError as exc:
            failed += 1
            click.echo(f"error: {photo}: cannot read it ({exc.strerror or exc})", err=True)
            results.append({"image_id": str(photo), "error": f"cannot read it ({exc.strerror or exc})"})
    with GatewayClient(server, api_key=api_key, timeout=timeout) as gw:
        answers = gw.label_many([data for _, data in readable], gallery=gallery, threshold=threshold,
                                min_face=min_face, min_score=min_score, annotate=out is not None) if readable else []
        for (photo, _), result in zip(readable, answers):
            if result.error:
                failed += 1
                click.echo(f"error: {photo}: {result.error}", err=True)
                results.append({"image_id": str(photo), "error": result.error})
                continue
            result.image_id = str(photo)
            names = ", ".join(f.name for f in result.faces) or "no faces"
            click.echo(f"{photo}: {len(result.faces)} face(s): {names}", err=out is None)
            doc = result.to_json()
            if out is not None:
                (out / f"{Path(photo).stem}.labelled.jpg").write_bytes(result.annotated)
                (out / f"{Path(photo).stem}.json").write_text(json.dumps(doc, indent=2) + "\n")
            results.append(doc)
    if out is None:
        click.echo(json.dumps(results if len(results) != 1 else results[0], indent=2))
    if failed:
        raise UserInputError(f"{failed} of {len(photos)} photo(s) could not be labelled (see above)")


def _make_label_command() -> click.Command:
    """``iznet label``: the in-process command (``iznet.cli.gallery.label``), plus
    ``--server HOST:PORT`` to label through a running gateway instead (same output)."""
    from iznet.cli.gallery import label as local

    def callback(server, api_key, timeout, **kwargs):
        if not server:
            return local.callback(**kwargs)
        # Through a server, an unspecified gallery means the server's default one.
        source = click.get_current_context().get_parameter_source("gallery_name")
        gallery = "" if source == click.core.ParameterSource.DEFAULT else kwargs["gallery_name"]
        return _label_remote(kwargs["photos"], server, gallery, kwargs["out"], kwargs["threshold"],
                             kwargs["min_face"], kwargs["min_score"], api_key, timeout)

    params = [*local.params,
              click.Option(["--server"], default=None, help="Label through the gateway at HOST:PORT (as `iznet up` "
                           "prints it) instead of in this process; --gallery, --out, --threshold, --min-face and "
                           "--min-score apply, the models are the server's."),
              click.Option(["--api-key"], default=None, help="API key, when the gateway requires one."),
              click.Option(["--timeout"], default=60.0, show_default=True, type=float,
                           help="Seconds per photo through the gateway.")]
    return click.Command("label", params=params, callback=callback, help=local.help, short_help=local.short_help)


label = _make_label_command()
