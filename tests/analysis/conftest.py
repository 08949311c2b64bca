"""Embeddings built to look like the study's cases: well separated, overlapping, collapsed."""

from __future__ import annotations

import numpy as np
import pytest


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def clusters(centres: np.ndarray, per: int, noise: float | list[float], seed: int = 0,
             names: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``per`` unit vectors around each centre (Gaussian noise of the given scale per dimension)."""
    rng = np.random.default_rng(seed)
    p, d = centres.shape
    noise = [noise] * p if np.isscalar(noise) else noise
    names = names or [f"person{k:02d}" for k in range(p)]
    x = np.concatenate([centres[k] + rng.normal(size=(per, d)) * noise[k] for k in range(p)])
    return unit(x), np.repeat(names, per)


def random_centres(p: int, d: int = 128, seed: int = 0) -> np.ndarray:
    return unit(np.random.default_rng(seed).normal(size=(p, d)))


@pytest.fixture
def separated() -> tuple[np.ndarray, np.ndarray]:
    """12 people, 20 faces each, tight clusters around random (nearly orthogonal) directions."""
    return clusters(random_centres(12), 20, 0.02)


@pytest.fixture
def overlapping() -> tuple[np.ndarray, np.ndarray]:
    """The study's Eunbi case: Eunbi's faces are spread wide and her centre lies between Chaeyeon's and
    Minju's; the other people are well apart."""
    rng = np.random.default_rng(1)
    base = random_centres(5, seed=1)
    minju = base[1]
    chaeyeon = unit((base[1] + 0.6 * base[2])[None])[0]
    eunbi = unit((base[1] + 0.5 * base[2] + 0.3 * rng.normal(size=128) / np.sqrt(128))[None])[0]
    centres = np.stack([eunbi, chaeyeon, minju, base[3], base[4]])
    return clusters(centres, 25, [0.09, 0.03, 0.03, 0.02, 0.02], seed=2,
                    names=["eunbi", "chaeyeon", "minju", "hyewon", "yuri"])
