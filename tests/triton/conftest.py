"""Fixtures for export and serving: tiny embedders written in the trained-model format (model.pt + model.json)
with BatchNorm statistics taken from generated faces, generated face crops, and one real Triton server per
module (tritonserver from nvidia-pytriton's own virtualenv, on free loopback ports)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from iznet.embedding.networks import create_network
from iznet.embedding.preprocess import Preprocess, prepare
from iznet.synthetic import draw_face, make_person


def face_crops(n: int, seed: int = 0, size: int = 120) -> list[np.ndarray]:
    """``n`` generated face photos of ``n // 2`` people (two each), BGR uint8, of a few different sizes."""
    rng = np.random.default_rng(seed)
    people = [make_person(rng, f"p{i}") for i in range(max(1, (n + 1) // 2))]
    return [draw_face(people[i // 2], rng, size=size + 8 * (i % 3)) for i in range(n)]


def write_embedder(out: Path, network: str = "small", flip_tta: bool = True, seed: int = 0,
                   crop_fraction: float = 0.9, **arch) -> Path:
    """A model directory ``load_embedder`` reads, as the trainer writes it; BN running statistics are set
    from generated faces so the network is not a trivial identity of its init."""
    torch.manual_seed(seed)
    net = create_network(network, **arch)
    pp = Preprocess(input_size=net.arch["input_size"], crop_fraction=crop_fraction)
    x = prepare(face_crops(16, seed=seed + 100), pp)
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(x)
    net.eval()
    out.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), out / "model.pt")
    card = {"kind": "embedder", "name": f"{network}-test", "version": f"s{seed}", "architecture": net.arch,
            "preprocess": pp.to_dict() | {"flip_tta": flip_tta}}
    (out / "model.json").write_text(json.dumps(card, indent=2))
    return out


@pytest.fixture(scope="session")
def small_model(tmp_path_factory) -> Path:
    return write_embedder(tmp_path_factory.mktemp("model") / "small", input_size=32, width=0.5)


@pytest.fixture(scope="session")
def crops() -> list[np.ndarray]:
    return face_crops(40, seed=7)
