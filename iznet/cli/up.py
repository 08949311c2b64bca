"""``iznet up``: the whole service stack on this machine, and ``iznet label --server``: a photo through it."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path

import click

from iznet.config import load_settings


@click.command()
@click.option("--store", type=click.Path(), default=None,  # checked before anything starts
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
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address every process listens on (services, metrics, the gateway and its Ray node); "
                   "0.0.0.0 for every interface.")
@click.option("--api-key", "api_keys", multiple=True,
              help="Require this x-api-key on gateway calls (repeatable); the services take it as a key with "
                   "write rights (gallery Enroll, RenamePerson, RemovePerson). Also IZNET_UP_API_KEYS.")
@click.option("--read-key", "read_keys", multiple=True,
              help="A key the gateway accepts and the services take as read-only (repeatable).")
@click.option("--poll", default=1.0, show_default=True, type=float,
              help="Seconds between checks for newly published model/gallery versions.")
@click.option("--log-dir", type=click.Path(), default=None,
              help="Where each process logs (default: <store>/logs).")
@click.option("--drain-timeout", default=10.0, show_default=True, type=float,
              help="On Ctrl-C/SIGTERM, seconds the gateway gets to finish the calls in flight (new ones are refused).")
@click.option("--max-restarts", default=5, show_default=True, type=click.IntRange(0),
              help="Restarts of one process within --restart-window before `iznet up` gives up (exit 1).")
@click.option("--restart-window", default=120.0, show_default=True, type=float, help="Seconds, for --max-restarts.")
def up(store, gallery, model, detector, port, host, api_keys, read_keys, poll, log_dir, drain_timeout, max_restarts,
       restart_window):
    """Start the detection, embedding and gallery services and the Ray Serve gateway on loopback.

    Prints where each listens (gRPC and Prometheus /metrics), then watches them: one that dies is restarted
    on its port with backoff (its log and its iznet_restarts metric count the restarts), and after
    --max-restarts within --restart-window it stops everything and exits 1. Ctrl-C (or SIGTERM) stops them
    gracefully: the gateway finishes the calls in flight, then the services stop. The processes die with it
    even when it is killed. Label through it with `iznet label --server ADDRESS PHOTO`.
    """
    from iznet.cli.checks import readable_store, writable_dir
    from iznet.gallery import GalleryStore
    from services.stack import Stack, StackConfig

    settings = load_settings(store=store)
    readable_store(settings.store)
    g = GalleryStore(settings.store).load(gallery)  # NotFoundError naming the galleries there are
    logs = writable_dir(Path(log_dir) if log_dir else settings.store / "logs", "log folder")
    model = model or g.model.get("spec") or g.model.get("name")
    if model.startswith("models/"):  # the embedding service follows models/NAME's CURRENT by name
        model = model.split("/")[1]
    detector = detector or g.detector
    stack = Stack(StackConfig(store=settings.store, gallery=gallery, model=model, detector=detector,
                              api_keys=list(api_keys), read_keys=list(read_keys), poll_s=poll, host=host,
                              gateway_port=port, log_dir=logs, drain_s=drain_timeout, max_restarts=max_restarts,
                              restart_window_s=restart_window))
    stopping = threading.Event()
    gave_up = None
    previous = {s: signal.signal(s, lambda *_: stopping.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        click.echo("starting the services and the gateway (Ray takes a while)...")
        stack.start()
        from services.web import start_web  # the web page, beside the services; stopped in `finally`
        start_web(stack)
        for name, info in stack.addresses().items():
            metrics = f"  metrics http://{info['address'].rsplit(':', 1)[0]}:{info['metrics_port']}/metrics" \
                if "metrics_port" in info else ""
            click.echo(f"{name:10s} {info['address']}{metrics}")
        if "web" in stack.procs:
            click.echo(f"web page   {stack.procs['web'].info['url']}")
        click.echo(f"logs in {stack.log_dir}")
        wide = stack.listeners_beyond_host()
        if wide:
            click.echo(f"warning: listening beyond {host}: " + ", ".join(map(str, wide)), err=True)
        click.echo(f"ready: iznet label --server {stack.gateway} PHOTO   (Ctrl-C stops everything)")
        # A process that dies is restarted on its port with backoff while the others keep running.
        gave_up = stack.supervise(stopping, say=lambda line: click.echo(line, err=True))
    finally:
        click.echo("stopping...")
        web_code = stack.procs["web"].stop() if "web" in stack.procs else None
        codes = {**stack.stop(), **({"web": web_code} if "web" in stack.procs else {})}
        for s, handler in previous.items():
            signal.signal(s, handler)
        click.echo("stopped: " + ", ".join(f"{n} ({c})" for n, c in codes.items()))
    if gave_up:
        click.echo(f"error: {gave_up}", err=True)
        raise click.exceptions.Exit(1)


def _label_remote(photos, server, gallery, out, threshold, min_face, min_score, api_key, timeout) -> None:
    """Label photos through a running gateway; prints and writes what the in-process ``iznet label`` does."""
    from iznet.client import GatewayClient
    from iznet.errors import UserInputError

    from iznet.cli.checks import writable_dir

    if out is not None:
        out = writable_dir(out, "output folder")
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
