"""Export a trained embedder to ONNX: one self-contained graph from face pixels to unit vectors.

The graph's input is what every backend sends over the wire: ``crops``, a uint8 batch ``(N, S, S, 3)`` of BGR
face crops already cut and resized by :func:`iznet.embedding.preprocess.crop_resize` (the cheap, image-size
dependent part stays on the client). Inside the graph: BGR -> RGB, NHWC -> NCHW, ``(x - mean) / std``, the
network, the flip test-time augmentation when the model card asks for it, and the final L2 normalisation, so
``embedding`` ``(N, dim)`` float32 matches :meth:`iznet.embedding.embedder.Embedder.embed` exactly. uint8 in
keeps a remote call (Triton) 4x smaller than float input would.

The batch axis is dynamic. :func:`export_onnx` runs the torch model and onnxruntime on the same inputs at
several batch sizes and refuses the export when any component differs by more than :data:`EXPORT_ATOL`.

The model card travels inside the ONNX file (metadata ``iznet_card``), so ``model.onnx`` alone is enough for
the onnx backend to know its preprocessing and the version it must report.
"""

from __future__ import annotations

import copy
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from iznet.embedding.embedder import Embedder
from iznet.embedding.preprocess import Preprocess
from iznet.errors import PreconditionError

INPUT_NAME = "crops"
OUTPUT_NAME = "embedding"
#: Largest allowed |torch - onnxruntime| for any component of a unit embedding (float32, CPU).
EXPORT_ATOL = 1e-4
#: The ONNX opset written (onnxruntime >= 1.14 and every Triton since 23.x run it).
OPSET = 17


class EmbedderGraph(nn.Module):
    """uint8 BGR crops (N, S, S, 3) -> (N, dim) float32 unit vectors; the exact maths of ``Embedder.embed``."""

    def __init__(self, net: nn.Module, pp: Preprocess, flip_tta: bool):
        super().__init__()
        self.net = net.eval()
        self.mean, self.std, self.flip_tta = float(pp.mean), float(pp.std), bool(flip_tta)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        x = torch.flip(crops, dims=[3]).permute(0, 3, 1, 2).float()
        x = (x - self.mean) / self.std
        e = self.net(x)
        if self.flip_tta:
            e = e + self.net(torch.flip(x, dims=[3]))
        return F.normalize(e, dim=1)


class _StandardiseFeatures(nn.Module):
    """An evaluating ``BatchNorm1d`` written out as its arithmetic, ``(x - mean) / sqrt(var + eps) * w + b``.
    torch's ONNX exporter must know a BatchNorm's channel count, which it cannot infer after a concatenation of
    computed features (the HOG/LBP networks); this needs none and gives the same numbers."""

    def __init__(self, bn: nn.BatchNorm1d):
        super().__init__()
        self.register_buffer("mean", bn.running_mean.detach().clone())
        self.register_buffer("inv_std", torch.rsqrt(bn.running_var.detach() + bn.eps))
        self.affine = bn.affine
        if bn.affine:
            self.register_buffer("weight", bn.weight.detach().clone())
            self.register_buffer("bias", bn.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = (x - self.mean) * self.inv_std
        return y * self.weight + self.bias if self.affine else y


def exportable(net: nn.Module) -> nn.Module:
    """``net`` for the exporter: a copy with every ``BatchNorm1d`` as :class:`_StandardiseFeatures` (the model
    itself is untouched)."""
    if not any(isinstance(m, nn.BatchNorm1d) and m.track_running_stats for m in net.modules()):
        return net
    net = copy.deepcopy(net).eval()
    for parent in list(net.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.BatchNorm1d) and child.track_running_stats:
                setattr(parent, name, _StandardiseFeatures(child))
    return net


def card_summary(emb: Embedder) -> dict:
    """What a backend needs to reproduce the embedder's answers and say which model gave them."""
    return {
        "version": dict(emb.version),
        "preprocess": emb.preprocess.to_dict(),
        "flip_tta": bool(emb.flip_tta),
        "dim": int(emb.dim),
        "input_size": int(emb.input_size),
        "architecture": dict(emb.card.get("architecture", {})),
        "chip": emb.chip.to_dict(),
        "threshold": dict(getattr(emb, "calibration", {}) or {}),
    }


def sample_crops(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Deterministic face-like test input: smooth random images (not pure noise, which BN layers hate)."""
    rng = np.random.default_rng(seed)
    low = rng.integers(0, 256, size=(n, 8, 8, 3)).astype(np.float32)
    idx = np.linspace(0, 7, size).round().astype(int)
    img = low[:, idx][:, :, idx] + rng.normal(0, 12, size=(n, size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _torch_export(graph: EmbedderGraph, example: torch.Tensor, path: Path) -> str:
    """torch's TorchScript-based exporter (seconds; the dynamo exporter takes a minute or more on a small
    net), falling back to the dynamo exporter (needs ``onnxscript``) where the former is gone or fails."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(graph, (example,), str(path), dynamo=False, opset_version=OPSET,
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})
            return "torchscript"
        except Exception as first:  # noqa: BLE001 - try the other exporter before giving up
            try:
                program = torch.onnx.export(
                    graph, (example,), dynamo=True, opset_version=max(OPSET, 18), input_names=[INPUT_NAME],
                    output_names=[OUTPUT_NAME], dynamic_shapes={"crops": {0: torch.export.Dim("batch", min=1)}},
                    verbose=False)
            except Exception as second:  # noqa: BLE001
                raise PreconditionError(f"torch cannot export this network to ONNX: {first!r}; "
                                        f"dynamo exporter: {second!r}") from None
            program.save(str(path))
            return "dynamo"


def _set_metadata(path: Path, meta: dict[str, str]) -> None:
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    model.producer_name = "iznet"
    tmp = path.with_suffix(".onnx.tmp")
    onnx.save(model, str(tmp))
    tmp.replace(path)


def check_onnx(emb: Embedder, path: Path, batch_sizes=(1, 2, 7), atol: float = EXPORT_ATOL, seed: int = 0) -> dict:
    """Run torch (``Embedder``'s own maths) and onnxruntime on the same crops; the largest difference per batch."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    graph = EmbedderGraph(emb.model, emb.preprocess, emb.flip_tta)
    rows = []
    for i, n in enumerate(batch_sizes):
        crops = sample_crops(n, emb.input_size, seed=seed + i)
        with torch.inference_mode():
            ref = graph(torch.from_numpy(crops)).numpy()
        got = sess.run([OUTPUT_NAME], {INPUT_NAME: crops})[0]
        if got.shape != ref.shape:
            raise PreconditionError(f"ONNX export gives shape {got.shape} for batch {n}, torch {ref.shape}")
        rows.append({"batch": int(n), "max_abs_diff": float(np.abs(got - ref).max()),
                     "min_cosine": float((got * ref).sum(1).min())})
    worst = max(r["max_abs_diff"] for r in rows)
    report = {"atol": atol, "max_abs_diff": worst, "batches": rows, "ok": worst <= atol,
              "onnxruntime": ort.__version__}
    if not report["ok"]:
        raise PreconditionError(f"ONNX export of {path} differs from torch by {worst:.2e} > {atol:.0e} "
                                f"(per batch: {rows}); not written")
    return report


def export_onnx(emb: Embedder, path: str | Path, atol: float = EXPORT_ATOL) -> dict:
    """Write ``emb`` as ONNX at ``path`` (dynamic batch axis, card in the metadata), checked against torch.

    Returns the export report (opset, check results, seconds). Raises :class:`PreconditionError` when the
    exported graph does not reproduce torch within ``atol``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    graph = EmbedderGraph(exportable(emb.model), emb.preprocess, emb.flip_tta)
    example = torch.from_numpy(sample_crops(2, emb.input_size))
    tmp = path.with_name(f"{path.name}.{os.getpid()}.partial")  # processes exporting at once do not collide
    try:
        exporter = _torch_export(graph, example, tmp)
        summary = card_summary(emb)
        _set_metadata(tmp, {"iznet_card": json.dumps(summary, sort_keys=True)})
        check = check_onnx(emb, tmp, atol=atol)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
        for extra in path.parent.glob(tmp.name + "*"):
            extra.unlink(missing_ok=True)
    return {"onnx": str(path), "opset": OPSET, "exporter": exporter, "input": INPUT_NAME, "output": OUTPUT_NAME,
            "input_shape": ["batch", emb.input_size, emb.input_size, 3], "input_dtype": "uint8",
            "output_shape": ["batch", emb.dim], "check": check, "torch": torch.__version__,
            "seconds": round(time.perf_counter() - t0, 2), "card": summary}
