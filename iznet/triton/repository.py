"""A Triton model repository of exported embedders, kept in the artifact store like every other artifact.

``iznet export`` writes, under ``<store>/triton`` (a Triton model repository)::

    <name>/config.pbtxt              ONNX Runtime backend (official Triton image), instance group on the GPU
    <name>/configs/python_cpu.pbtxt  python backend wrapping onnxruntime, for CPU-only tritonserver builds
                                     (the one nvidia-pytriton bundles): tritonserver --model-config-name=python_cpu
    <name>/configs/onnx_cpu.pbtxt    ONNX Runtime backend on CPU instances (the official image on a node
                                     without a GPU): tritonserver --model-config-name=onnx_cpu
    <name>/<N>/model.onnx            the graph: uint8 BGR crops (batch, S, S, 3) -> unit vectors (batch, dim)
    <name>/<N>/model.py              the python-backend wrapper (the ONNX Runtime backend ignores it)
    <name>/<N>/export.json           the model card summary and the torch-vs-onnxruntime check
    <name>/CURRENT                   the version the configs serve (``version_policy: specific``)

A version is staged in a hidden folder and renamed into place (Triton ignores non-numeric folders and stray
files), then its configs are rewritten atomically to serve it and ``CURRENT`` is switched. All configs batch
dynamically and carry the model card as the parameter ``iznet_card``, so a client needs only a URL and a name.
A Triton polling its repository (``--model-control-mode=poll``) picks a new export up by itself.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

from iznet.errors import PreconditionError, UserInputError
from iznet.store import ArtifactStore, atomic_write_json, atomic_write_text

KIND = "triton"
CPU_CONFIG = "python_cpu"
#: the official image on a node without a GPU: ONNX Runtime backend, CPU instances
ONNX_CPU_CONFIG = "onnx_cpu"
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class ServingOptions:
    #: largest batch Triton forms (and accepts in one request)
    max_batch_size: int = 64
    #: batch sizes the dynamic batcher aims for
    preferred_batch_sizes: tuple[int, ...] = (8, 16, 32, 64)
    #: how long the dynamic batcher may hold a request to fill a batch
    max_queue_delay_us: int = 2000
    #: model instances per GPU (config.pbtxt, ONNX Runtime backend)
    gpu_instances: int = 1
    #: CPU model instances (python_cpu config)
    cpu_instances: int = 1
    #: onnxruntime intra-op threads per CPU instance
    onnx_threads: int = 1

    def validate(self) -> "ServingOptions":
        if self.max_batch_size < 1:
            raise UserInputError(f"max batch size must be >= 1, got {self.max_batch_size}")
        if min(self.gpu_instances, self.cpu_instances, self.onnx_threads) < 1:
            raise UserInputError("instance counts and threads must be >= 1")
        if self.max_queue_delay_us < 0:
            raise UserInputError("the queue delay cannot be negative")
        return self


def _pbtxt_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def render_config(name: str, card: dict, version: int, opts: ServingOptions, kind: str) -> str:
    """config.pbtxt text: ``kind`` is ``onnx`` (ONNX Runtime backend, GPU instances), ``onnx_cpu`` (the same
    on CPU instances) or ``python_cpu`` (python backend over onnxruntime)."""
    size, dim = int(card["input_size"]), int(card["dim"])
    preferred = sorted({b for b in opts.preferred_batch_sizes if 1 <= b <= opts.max_batch_size}
                       | {opts.max_batch_size})
    params = {"iznet_card": json.dumps(card, sort_keys=True, ensure_ascii=False)}
    if kind == "onnx":
        head = [
            f"# IZ*Net embedder {card['version'].get('name')} on Triton's ONNX Runtime backend (official image).",
            f"# CPU-only Triton without that backend: --model-config-name={CPU_CONFIG} (configs/{CPU_CONFIG}.pbtxt).",
            f"name: {_pbtxt_string(name)}",
            'backend: "onnxruntime"',
        ]
        group = f"instance_group [ {{ count: {opts.gpu_instances} kind: KIND_GPU }} ]"
    elif kind == ONNX_CPU_CONFIG:
        head = [
            f"# IZ*Net embedder {card['version'].get('name')} on Triton's ONNX Runtime backend, CPU instances",
            f"# (the official image on a node without a GPU: --model-config-name={ONNX_CPU_CONFIG}).",
            f"name: {_pbtxt_string(name)}",
            'backend: "onnxruntime"',
        ]
        group = f"instance_group [ {{ count: {opts.cpu_instances} kind: KIND_CPU }} ]"
        params["intra_op_thread_count"] = str(opts.onnx_threads)  # read by the ONNX Runtime backend
    elif kind == CPU_CONFIG:
        head = [
            f"# IZ*Net embedder {card['version'].get('name')} on Triton's python backend: <version>/model.py runs",
            "# <version>/model.onnx with onnxruntime on the CPU (for tritonserver builds without the ONNX backend).",
            f"name: {_pbtxt_string(name)}",
            'backend: "python"',
        ]
        group = f"instance_group [ {{ count: {opts.cpu_instances} kind: KIND_CPU }} ]"
        params["onnx_intra_op_threads"] = str(opts.onnx_threads)
    else:
        raise ValueError(kind)
    lines = head + [
        f"max_batch_size: {opts.max_batch_size}",
        f"version_policy: {{ specific: {{ versions: [ {int(version)} ] }} }}",
        f'input [ {{ name: "crops" data_type: TYPE_UINT8 dims: [ {size}, {size}, 3 ] }} ]',
        f'output [ {{ name: "embedding" data_type: TYPE_FP32 dims: [ {dim} ] }} ]',
        "dynamic_batching {",
        f"  preferred_batch_size: [ {', '.join(map(str, preferred))} ]",
        f"  max_queue_delay_microseconds: {opts.max_queue_delay_us}",
        "}",
        group,
    ]
    for k, v in params.items():
        lines.append(f"parameters {{ key: {_pbtxt_string(k)} value: {{ string_value: {_pbtxt_string(v)} }} }}")
    return "\n".join(lines) + "\n"


def write_configs(model_dir: Path, name: str, card: dict, version: int, opts: ServingOptions) -> None:
    atomic_write_text(model_dir / "config.pbtxt", render_config(name, card, version, opts, "onnx"))
    for kind in (CPU_CONFIG, ONNX_CPU_CONFIG):
        atomic_write_text(model_dir / "configs" / f"{kind}.pbtxt", render_config(name, card, version, opts, kind))
    atomic_write_json(model_dir / "serving.json", {"options": asdict(opts), "version": int(version)})


def check_name(name: str) -> str:
    if not _NAME_RE.match(name or ""):
        raise UserInputError(f"bad Triton model name {name!r}: letters, digits, '_', '.', '-'")
    return name


def export_to_store(model: str | Path, store: str | Path, name: str = "iznet_embedder",
                    opts: ServingOptions | None = None, make_current: bool = True, atol: float | None = None,
                    threads: int | None = None) -> dict:
    """Export the embedder ``model`` (a registered torch network such as ``dlib-resnet``, a trained model's
    folder, or ``<store>/models/<name>`` for the current version) as the next version of
    ``<store>/triton/<name>``."""
    from iznet.embedding.onnx_export import EXPORT_ATOL, card_summary, export_onnx
    from iznet.registry import EMBEDDERS, create_embedder

    opts = (opts or ServingOptions()).validate()
    store = ArtifactStore(store)
    check_name(name)
    if str(model) in EMBEDDERS or str(model) == "default":
        emb = create_embedder(str(model), "torch", threads=threads)  # the torch network is what exports
        if not hasattr(emb, "model"):
            raise PreconditionError(f"{model} is not a torch network (nothing to export to ONNX)")
    else:
        model = Path(model)
        if model.is_dir() and not (model / "model.pt").exists() and (model / "CURRENT").is_file():
            model = model / (model / "CURRENT").read_text().strip()  # a model in the store: its current version
        emb = create_embedder(str(model), "torch", threads=threads)
    card = card_summary(emb)
    model_dir = store.dir(KIND, name)
    # Triton's config is per model, not per version: every version under one name must fit it.
    if store.versions(KIND, name):
        try:
            prev = json.loads((store.current(KIND, name) / "export.json").read_text())["card"]
        except (OSError, KeyError, json.JSONDecodeError, Exception):  # noqa: BLE001
            prev = None
        if prev and (prev["input_size"], prev["dim"]) != (card["input_size"], card["dim"]):
            raise PreconditionError(
                f"{model_dir} serves {prev['input_size']}px -> {prev['dim']}-d embedders; this one is "
                f"{card['input_size']}px -> {card['dim']}-d: export it under another --name")
    staged = store.stage(KIND, name)
    try:
        report = export_onnx(emb, staged / "model.onnx", atol=atol if atol is not None else EXPORT_ATOL)
        shutil.copyfile(resources.files("iznet.triton").joinpath("python_backend_model.py"), staged / "model.py")
        report["source"] = str(model) if str(model) in EMBEDDERS or str(model) == "default" else \
            str(Path(model).resolve())
        report["serving"] = asdict(opts)
        atomic_write_json(staged / "export.json", report)
        version = store.publish(KIND, name, staged, make_current=False)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    if make_current:
        write_configs(model_dir, name, card, version, opts)
        store.set_current(KIND, name, version)
    report.update({"name": name, "version": version, "current": make_current,
                   "repository": str(store.root / KIND), "path": str(model_dir / str(version))})
    report["onnx"] = str(model_dir / str(version) / "model.onnx")
    return report


def activate(store: str | Path, name: str, version: int, opts: ServingOptions | None = None) -> None:
    """Serve another (e.g. an earlier) exported version: rewrite both configs for it and switch CURRENT."""
    store = ArtifactStore(store)
    vdir = store.dir(KIND, name) / str(version)
    try:
        report = json.loads((vdir / "export.json").read_text())
    except FileNotFoundError:
        raise UserInputError(f"{vdir}: no such exported version") from None
    if opts is None:
        opts = ServingOptions(**{**report.get("serving", {}),
                                 "preferred_batch_sizes": tuple(report.get("serving", {}).get(
                                     "preferred_batch_sizes", ServingOptions.preferred_batch_sizes))})
    write_configs(store.dir(KIND, name), name, report["card"], version, opts)
    store.set_current(KIND, name, version)
