"""Generated people and group photos of them, for a demo or a test on a machine without real photos.

Each person is a set of fixed traits (face shape, skin, eye spacing and colour, brows, hair, mouth); each photo
of them varies what a camera varies (background, light, pose, scale, position, noise). A group photo stands
several of them side by side in front of a wall, each with a body, and records who stands where (the truth a
labelled answer is checked against). They are cartoons, but OpenCV's Haar cascade finds most of them, so every
stage of the system runs on them for real.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

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


def draw_head(p: Person, rng: np.random.Generator, img: np.ndarray, centre: tuple[int, int], size: int) -> None:
    """Draw ``p``'s head (face, hair, eyes, brows, nose, mouth) onto ``img`` in place, centred at ``centre``
    and ``size`` pixels tall (the whole portrait's side in :func:`draw_face`). Every colour it uses is non-black,
    so a head drawn on black can be cut out by its non-black pixels."""
    cx, cy = centre
    cv2.ellipse(img, (cx, cy), (int(size * 0.32 * p.jaw), int(size * 0.42)), 0, 0, 360, p.skin, -1)
    cv2.ellipse(img, (cx, int(cy - size * 0.3)), (int(size * 0.34), int(size * p.hair_height)), 0, 180, 360, p.hair, -1)
    ey, dx = int(cy - size * 0.08), int(size * p.eye_dx)
    for s in (-1, 1):
        cv2.ellipse(img, (cx + s * dx, ey), (int(size * 0.07), int(size * 0.035)), 0, 0, 360, (245, 245, 245), -1)
        cv2.circle(img, (cx + s * dx + int(rng.integers(-3, 4)), ey), int(size * 0.028), p.eye_colour, -1)
        by = ey - int(size * 0.075)
        tilt = int(size * p.brow_tilt) * s
        cv2.line(img, (cx + s * dx - int(size * 0.08), by + tilt), (cx + s * dx + int(size * 0.08), by - tilt),
                 tuple(int(v * 0.6) for v in p.hair), max(2, int(size * 0.025)))
    nose = tuple(int(v * 0.8) for v in p.skin)
    cv2.line(img, (cx, ey + int(size * 0.02)), (cx - int(size * 0.03), ey + int(size * (0.05 + p.nose_len))), nose, 3)
    smile = int(rng.integers(0, 2))
    cv2.ellipse(img, (cx, int(cy + size * 0.22)), (int(size * p.mouth_width), int(size * 0.04)), 0,
                0 if smile else 180, 180 if smile else 360, (60, 60, 160), -1)


def draw_body(p: Person, rng: np.random.Generator, img: np.ndarray, centre: tuple[int, int], size: int) -> None:
    """A neck and shoulders in a shirt of random colour under the head centred at ``centre``, down to the
    bottom of ``img``. Group photos always have one; the demo's portraits too (``body=True``), so a face crop
    from either frames the same things: with head-only portraits the demo's embedder met necks and shirts first
    in the group photo and named 0-1 of 10 faces right; with them, 3 of 10 and no stranger named. Haar finds
    fewer of these faces, so portraits stay head-only by default."""
    cx, cy = centre
    shirt = tuple(int(v) for v in rng.integers(20, 230, 3))
    shoulders = cy + int(size * 0.62)
    half, top = int(size * 0.45), shoulders + int(size * 0.12)
    cv2.ellipse(img, (cx, top), (half, int(size * 0.2)), 0, 180, 360, shirt, -1)
    cv2.rectangle(img, (cx - half, top), (cx + half, img.shape[0]), shirt, -1)
    cv2.rectangle(img, (cx - size // 10, cy), (cx + size // 10, shoulders + size // 20), p.skin, -1)


def face_box(centre: tuple[int, int], size: int, p: Person) -> tuple[int, int, int, int]:
    """The face ellipse's bounding box (x1, y1, x2, y2) of a head drawn by :func:`draw_head`."""
    cx, cy = centre
    rx, ry = int(size * 0.32 * p.jaw), int(size * 0.42)
    return cx - rx, cy - ry, cx + rx, cy + ry


def _camera(img: np.ndarray, rng: np.random.Generator, blur: float, centre: tuple[int, int], radius: float,
            spread: float) -> np.ndarray:
    """What a camera adds: blur, uneven light (darker away from ``centre``, brighter on one side), exposure,
    sensor noise."""
    h, w = img.shape[:2]
    img = cv2.GaussianBlur(img, (0, 0), blur)
    yy, xx = np.mgrid[:h, :w]
    cx, cy = centre
    light = rng.uniform(-0.3, 0.3)
    shade = 1 - 0.25 * ((xx - cx) ** 2 + (yy - cy) ** 2) / radius**2 + light * (xx - cx) / spread
    img = img * shade[..., None] * rng.uniform(0.75, 1.15) + rng.normal(0, 5, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def draw_face(p: Person, rng: np.random.Generator, size: int = 200, body: bool = False) -> np.ndarray:
    """One photo of ``p``: a size x size portrait with the face roughly centred; with ``body``, a neck and
    shoulders under it as in a group photo."""
    img = np.full((size, size, 3), rng.integers(40, 220, 3), np.uint8)
    c = size // 2
    if body:
        draw_body(p, rng, img, (c, c), size)
    draw_head(p, rng, img, (c, c), size)
    img = _camera(img, rng, size * 0.01, (c, c), c, size)
    # The camera: a small rotation, scale and shift.
    m = cv2.getRotationMatrix2D((c, c), rng.uniform(-8, 8), rng.uniform(0.85, 1.1))
    m[:, 2] += rng.uniform(-0.05, 0.05, 2) * size
    return cv2.warpAffine(img, m, (size, size), borderMode=cv2.BORDER_REFLECT)


def person_name(i: int) -> str:
    """The ``i``-th generated name: Ada, Bo, ..., Pia, Ada1, Bo1, ..."""
    return FIRST[i % len(FIRST)] + ("" if i < len(FIRST) else str(i // len(FIRST)))


def make_people(out: str | Path, people: int = 8, photos: int = 12, seed: int = 0, size: int = 200,
                body: bool = False) -> list[Person]:
    """Write ``out/<name>/<name>_NNNN.jpg`` for ``people`` generated people with ``photos`` photos each
    (``body``: with neck and shoulders, see :func:`draw_body`)."""
    rng = np.random.default_rng(seed)
    out = Path(out)
    made = []
    for i in range(people):
        name = person_name(i)
        person = make_person(rng, name)
        for k in range(1, photos + 1):
            write_image(out / name / f"{name}_{k:04d}.jpg", draw_face(person, rng, size, body))
        made.append(person)
    return made


def draw_group(people: Sequence[Person], rng: np.random.Generator,
               head: int = 150) -> tuple[np.ndarray, list[dict]]:
    """A group photo of ``people`` side by side, left to right, and where each face is.

    ``head`` is the size a head is drawn at (as :func:`draw_face`'s ``size``; each varies by +-10%). Returns the
    BGR photo and, per person, ``{"name", "box": [x1, y1, x2, y2]}`` of their face ellipse.
    """
    n = len(people)
    # heads are ~0.7 head wide with hair: a little air between neighbours, or Haar merges two faces into one box
    step = int(head * 1.05)
    w, h = step * n + head // 2, int(head * 2.1)
    top, bottom = rng.integers(90, 230, 3), rng.integers(40, 180, 3)
    ramp = np.linspace(0, 1, h)[:, None, None]
    img = np.broadcast_to(top * (1 - ramp) + bottom * ramp, (h, w, 3)).astype(np.uint8).copy()
    # A sofa behind them: something in the scene besides faces.
    cv2.rectangle(img, (0, int(h * 0.62)), (w, h), tuple(int(v) for v in rng.integers(30, 200, 3)), -1)
    truth = []
    for i, p in enumerate(people):
        size = int(head * rng.uniform(0.9, 1.1))
        cx = int(head // 4 + step * (i + 0.5) + rng.integers(-step // 10, step // 10 + 1))
        cy = int(head * 0.62 + rng.integers(-head // 12, head // 12 + 1))
        draw_body(p, rng, img, (cx, cy), size)
        # The head on black, tilted a little, then pasted where it is not black (draw_head never draws black).
        layer = np.zeros((size, size, 3), np.uint8)
        draw_head(p, rng, layer, (size // 2, size // 2), size)
        m = cv2.getRotationMatrix2D((size / 2, size / 2), rng.uniform(-5, 5), 1.0)
        layer = cv2.warpAffine(layer, m, (size, size), flags=cv2.INTER_NEAREST)
        x0, y0 = cx - size // 2, cy - size // 2
        xs, ys = slice(max(0, x0), min(w, x0 + size)), slice(max(0, y0), min(h, y0 + size))
        part = layer[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]
        mask = part.any(axis=2)
        img[ys, xs][mask] = part[mask]
        x1, y1, x2, y2 = face_box((cx, cy), size, p)
        truth.append({"name": p.name, "box": [max(0, x1), max(0, y1), min(w, x2), min(h, y2)]})
    img = _camera(img, rng, head * 0.01, (w // 2, h // 2), max(w, h) / 2, w)
    return img, truth


def make_group_photos(out: str | Path, known: Sequence[Person], photos: int = 2, per_photo: int = 4,
                      strangers: int = 1, seed: int = 0, head: int = 150) -> list[Path]:
    """Write ``out/group_NN.jpg`` group photos, each of ``per_photo`` of the ``known`` people (a seeded choice)
    and ``strangers`` generated people who are nobody's photos, with ``out/group_NN.truth.json`` saying who
    stands where: ``{"faces": [{"name", "box", "known"}]}`` (a stranger's ``known`` is false)."""
    rng = np.random.default_rng(seed + 7919)  # not the people's own stream: other faces, other cameras
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = {p.name for p in known}
    paths = []
    for k in range(1, photos + 1):
        chosen = [known[i] for i in rng.choice(len(known), min(per_photo, len(known)), replace=False)]
        extra = [make_person(rng, f"stranger{k}_{j + 1}") for j in range(strangers)]
        people = [*chosen, *extra]
        people = [people[i] for i in rng.permutation(len(people))]
        img, truth = draw_group(people, rng, head)
        path = out / f"group_{k:02d}.jpg"
        write_image(path, img)
        faces = [{**t, "known": t["name"] in names} for t in truth]
        (out / f"group_{k:02d}.truth.json").write_text(json.dumps({"faces": faces}, indent=2) + "\n")
        paths.append(path)
    return paths
