"""Inference: a trained embedder turns BGR face crops into 128-d L2-normalised vectors.

A model is a directory with ``model.pt`` (the network's ``state_dict``) and ``model.json`` (its model card:
architecture, preprocessing, dataset, metrics), as written by ``iznet train``.

    emb = load_embedder("runs/lfw-small")        # or .../model.pt or .../model.json
    vecs = emb.embed([crop1, crop2])              # (2, 128) float32, unit rows
    emb.version  # {"name", "version", "digest", "kind": "embedder"}
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from iznet.data.align import ChipSpec
from iznet.embedding.networks import create_network
from iznet.embedding.preprocess import Preprocess, prepare
from iznet.errors import NotFoundError, UserInputError
from iznet.sizes import EMBEDDING_DIM
from iznet.store import sha256_file




class Embedder:
    """A loaded embedding network with its preprocessing. ``embed`` is thread-safe for reading."""

    def __init__(self, model: torch.nn.Module, card: dict, preprocess: Preprocess, digest: str,
                 flip_tta: bool = True, batch_size: int = 64):
        self.model = model.eval()
        self.card = card
        self.preprocess = preprocess
        self.flip_tta = flip_tta
        self.batch_size = batch_size
        self.dim = int(card["architecture"].get("embedding_dim", EMBEDDING_DIM))
        self.version = {"name": card.get("name", "embedder"), "version": str(card.get("version", "0")),
                        "digest": digest, "kind": "embedder"}
        #: The face crop the model wants (cards of models trained on the builder's crops have none: box).
        self.chip = ChipSpec.parse(card.get("chip"))
        #: The unknown threshold its card recommends for new galleries (empty: calibrate on the gallery).
        self.calibration = dict(card.get("threshold") or {})
        self.backend = "torch"

    def close(self) -> None:
        pass

    @property
    def input_size(self) -> int:
        return self.preprocess.input_size

    @torch.inference_mode()
    def embed(self, crops: list[np.ndarray]) -> np.ndarray:
        """(N, dim) float32 L2-normalised embeddings of BGR uint8 face crops (any size; see the model card)."""
        crops = list(crops)
        if not crops:
            return np.zeros((0, self.dim), np.float32)
        out = []
        for i in range(0, len(crops), self.batch_size):
            x = prepare(crops[i:i + self.batch_size], self.preprocess)
            e = self.model(x)
            if self.flip_tta:
                e = e + self.model(torch.flip(x, dims=[3]))
            out.append(torch.nn.functional.normalize(e, dim=1).numpy().astype(np.float32))
        return np.concatenate(out)


def _locate(path: str | Path) -> tuple[Path, Path]:
    p = Path(path)
    if p.is_dir():
        d = p
    elif p.suffix in (".pt", ".json"):
        d = p.parent
    else:
        raise NotFoundError(f"no embedder at {p} (expected a directory with model.pt and model.json)")
    weights, card = d / "model.pt", d / "model.json"
    if not weights.is_file() or not card.is_file():
        raise NotFoundError(f"no embedder at {d}: needs model.pt and model.json")
    return weights, card


def load_embedder(path: str | Path, threads: int | None = None, flip_tta: bool | None = None,
                  crop_fraction: float | None = None) -> Embedder:
    """Load a trained embedder from its directory (or its ``model.pt`` / ``model.json``).

    ``crop_fraction`` overrides the model card's: the share of each crop's centre the network sees. A model
    trained on raw 250x250 LFW photos (card: 0.45) fed the dataset builder's 160x160 crops (face box plus a
    0.2 margin each side) wants about 0.72 there, the same face framing."""
    weights, card_path = _locate(path)
    try:
        card = json.loads(card_path.read_text())
        arch = dict(card["architecture"])
    except (json.JSONDecodeError, KeyError) as exc:
        raise UserInputError(f"{card_path}: not a model card ({exc})") from None
    if card.get("kind", "embedder") != "embedder":
        raise UserInputError(f"{card_path}: kind is {card.get('kind')!r}, not an embedder")
    if threads:
        torch.set_num_threads(threads)
    name = arch.pop("name")
    dim = arch.pop("embedding_dim", EMBEDDING_DIM)
    model = create_network(name, dim, **arch)
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as exc:  # noqa: BLE001 - a broken or mismatched file is the user's to fix
        raise UserInputError(f"{weights}: cannot load weights ({exc.__class__.__name__}: {str(exc)[:200]})") from None
    pp = Preprocess.from_dict(card.get("preprocess", {}))
    if crop_fraction is not None:
        if not 0 < crop_fraction <= 1:
            raise UserInputError(f"crop fraction must be in (0, 1], got {crop_fraction}")
        pp = Preprocess(pp.input_size, crop_fraction, pp.mean, pp.std)
    tta = card.get("preprocess", {}).get("flip_tta", True) if flip_tta is None else flip_tta
    return Embedder(model, card, pp, "sha256:" + sha256_file(weights), flip_tta=tta)
