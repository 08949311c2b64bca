"""Generated people, for a demo or a test on a machine without real photos.

Each person is a set of fixed traits (face shape, skin, eye spacing and colour, brows, hair, mouth); each photo
of them varies what a camera varies (background, light, pose, scale, position, noise). They are cartoons,
but OpenCV's Haar cascade finds most of them, so every stage of the system runs on them for real.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from iznet.imageio import write_image

FIRST = ["Ada", "Bo", "Cy", "Di", "Ed", "Flo", "Gus", "Hal", "Ivy", "Jo", "Kit", "Lu", "Max", "Ned", "Oz", "Pia"]


@dataclass(frozen=True)
class Person:
    name: str
    skin: tuple[int, int, int]
    jaw: float  # face width / height
    eye_dx: float  # half distance between the eyes, as a fraction of the face size
    eye_colour: tuple[int, int, int]
    brow_tilt: float
    hair: tuple[int, int, int]
    hair_height: float
    mouth_width: float
    nose_len: float


def make_person(rng: np.random.Generator, name: str) -> Person:
    rand = lambda lo, hi: float(rng.uniform(lo, hi))  # noqa: E731
    return Person(
        name=name,
        skin=tuple(int(v) for v in rng.integers([80, 110, 150], [180, 205, 245])),
        jaw=rand(0.7, 0.92),
        eye_dx=rand(0.13, 0.2),
        eye_colour=tuple(int(v) for v in rng.integers(10, 140, 3)),
        brow_tilt=rand(-0.04, 0.04),
        hair=tuple(int(v) for v in rng.integers(10, 120, 3)),
        hair_height=rand(0.1, 0.22),
        mouth_width=rand(0.06, 0.13),
        nose_len=rand(0.08, 0.15),
    )


def draw_face(p: Person, rng: np.random.Generator, size: int = 200) -> np.ndarray:
    """One photo of ``p``: a size x size portrait with the face roughly centred."""
    img = np.full((size, size, 3), rng.integers(40, 220, 3), np.uint8)
    c = size // 2
    cv2.ellipse(img, (c, c), (int(size * 0.32 * p.jaw), int(size * 0.42)), 0, 0, 360, p.skin, -1)
    cv2.ellipse(img, (c, int(c - size * 0.3)), (int(size * 0.34), int(size * p.hair_height)), 0, 180, 360, p.hair, -1)
    ey, dx = int(c - size * 0.08), int(size * p.eye_dx)
    for s in (-1, 1):
        cv2.ellipse(img, (c + s * dx, ey), (int(size * 0.07), int(size * 0.035)), 0, 0, 360, (245, 245, 245), -1)
        cv2.circle(img, (c + s * dx + int(rng.integers(-3, 4)), ey), int(size * 0.028), p.eye_colour, -1)
        by = ey - int(size * 0.075)
        tilt = int(size * p.brow_tilt) * s
        cv2.line(img, (c + s * dx - int(size * 0.08), by + tilt), (c + s * dx + int(size * 0.08), by - tilt),
                 tuple(int(v * 0.6) for v in p.hair), max(2, int(size * 0.025)))
    nose = tuple(int(v * 0.8) for v in p.skin)
    cv2.line(img, (c, ey + int(size * 0.02)), (c - int(size * 0.03), ey + int(size * (0.05 + p.nose_len))), nose, 3)
    smile = int(rng.integers(0, 2))
    cv2.ellipse(img, (c, int(c + size * 0.22)), (int(size * p.mouth_width), int(size * 0.04)), 0,
                0 if smile else 180, 180 if smile else 360, (60, 60, 160), -1)
    img = cv2.GaussianBlur(img, (0, 0), size * 0.01)
    yy, xx = np.mgrid[:size, :size]
    light = rng.uniform(-0.3, 0.3)
    shade = 1 - 0.25 * ((xx - c) ** 2 + (yy - c) ** 2) / c**2 + light * (xx - c) / size
    img = img * shade[..., None] * rng.uniform(0.75, 1.15) + rng.normal(0, 5, img.shape)
    # The camera: a small rotation, scale and shift.
    m = cv2.getRotationMatrix2D((c, c), rng.uniform(-8, 8), rng.uniform(0.85, 1.1))
    m[:, 2] += rng.uniform(-0.05, 0.05, 2) * size
    return cv2.warpAffine(np.clip(img, 0, 255).astype(np.uint8), m, (size, size), borderMode=cv2.BORDER_REFLECT)


def make_people(out: str | Path, people: int = 8, photos: int = 12, seed: int = 0, size: int = 200) -> list[Person]:
    """Write ``out/<name>/<name>_NNNN.jpg`` for ``people`` generated people with ``photos`` photos each."""
    rng = np.random.default_rng(seed)
    out = Path(out)
    made = []
    for i in range(people):
        name = FIRST[i % len(FIRST)] + ("" if i < len(FIRST) else str(i // len(FIRST)))
        person = make_person(rng, name)
        for k in range(1, photos + 1):
            write_image(out / name / f"{name}_{k:04d}.jpg", draw_face(person, rng, size))
        made.append(person)
    return made
