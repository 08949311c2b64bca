"""``iznet export``: a trained embedder -> ONNX (checked against torch) -> a versioned Triton model repository."""

from __future__ import annotations

import json

import click


def _batches(value: str) -> tuple[int, ...]:
    try:
        out = tuple(int(x) for x in str(value).replace(" ", "").split(",") if x)
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected batch sizes like 8,16,32") from None
    if not out or min(out) < 1:
        raise click.BadParameter(f"{value!r}: batch sizes must be >= 1")
    return out


@click.command()
@click.argument("model")
@click.option("--store", type=click.Path(file_okay=False), default=None,
              help="Artifact store; the Triton model repository is <store>/triton. [$IZNET_STORE or ~/.iznet]")
@click.option("--name", default="iznet_embedder", show_default=True, help="Model name in Triton's repository.")
@click.option("--max-batch-size", type=int, default=64, show_default=True,
              help="Largest batch Triton forms or accepts (the batch axis of the ONNX graph is dynamic).")
@click.option("--preferred-batch-sizes", default="8,16,32,64", show_default=True,
              help="Batch sizes Triton's dynamic batcher aims for.")
@click.option("--max-queue-delay-us", type=int, default=2000, show_default=True,
              help="How long the dynamic batcher may hold a request to fill a batch (microseconds).")
@click.option("--gpu-instances", type=int, default=1, show_default=True,
              help="Model instances per GPU in config.pbtxt (ONNX Runtime backend).")
@click.option("--cpu-instances", type=int, default=1, show_default=True,
              help="CPU instances in configs/python_cpu.pbtxt (python backend over onnxruntime).")
@click.option("--onnx-threads", type=int, default=1, show_default=True,
              help="onnxruntime intra-op threads per CPU instance.")
@click.option("--atol", type=float, default=None,
              help="Largest allowed |torch - onnxruntime| per embedding component. [1e-4]")
@click.option("--current/--no-current", default=True, show_default=True,
              help="Serve the new version at once (rewrite the configs and CURRENT).")
@click.option("--threads", type=int, default=1, show_default=True, help="Torch CPU threads for the check.")
@click.option("--json", "as_json", is_flag=True, help="Print the export report as JSON.")
def export(model, store, name, max_batch_size, preferred_batch_sizes, max_queue_delay_us, gpu_instances,
           cpu_instances, onnx_threads, atol, current, threads, as_json) -> None:
    """Export an embedder (MODEL: dlib-resnet, or a trained model's directory with model.pt + model.json) to ONNX with a dynamic batch
    axis, check it against torch on the same inputs, and publish it as the next version of a Triton model
    repository in the store (<store>/triton/NAME/<version>/model.onnx, config.pbtxt for the ONNX Runtime
    backend on GPUs, configs/python_cpu.pbtxt for CPU-only Triton builds)."""
    from iznet.config import load_settings
    from iznet.triton.repository import CPU_CONFIG, ServingOptions, export_to_store

    settings = load_settings(store=store)
    opts = ServingOptions(max_batch_size=max_batch_size, preferred_batch_sizes=_batches(preferred_batch_sizes),
                          max_queue_delay_us=max_queue_delay_us, gpu_instances=gpu_instances,
                          cpu_instances=cpu_instances, onnx_threads=onnx_threads)
    report = export_to_store(model, settings.store, name=name, opts=opts, make_current=current, atol=atol,
                             threads=threads)
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
        return
    chk = report["check"]
    click.echo(f"exported {report['card']['version']['name']} as {name} version {report['version']}"
               f"{' (current)' if current else ''}: {report['path']}")
    click.echo(f"  checked against torch at batches {[b['batch'] for b in chk['batches']]}: max |diff| "
               f"{chk['max_abs_diff']:.1e} <= {chk['atol']:.0e}")
    click.echo(f"  serve on a GPU (official Triton image): tritonserver --model-repository {report['repository']}")
    click.echo(f"  serve on this CPU: iznet triton serve --store {settings.store}   "
               f"(tritonserver --model-config-name={CPU_CONFIG})")
