"""Training samples without hand labelling: composites, mosaics, and pseudo-labelled photos, augmented.

Every sample is a ``size x size`` BGR uint8 image and its faces, one row each (N, 14): the box x1, y1, x2, y2
and five landmarks (left eye, right eye, nose, left and right mouth corner, as MTCNN gives them) as x, y
pairs in pixels, NaN where the label has none (a teacher without landmarks, the PASCAL boxes). Every
transform moves the points with the box; a mirror image also swaps left and right.

* **composite**: a face-free scene (``detection/nonface_scenes``) with 1-12 face crops pasted at many scales
  and positions (feathered elliptical masks so no hard seam marks the face), the boxes known by construction.
* **mosaic**: a k x k grid (k = 1..5) of labelled photos shrunk into the cells: many small faces, like the
  group photos and scanned class pictures of CMU+MIT.
* **photo**: one labelled photo, randomly scaled and cropped.

Labelled photos are pseudo-labelled by a teacher (LFW, the group photos) or come with boxes (the dlib PASCAL
*training* set). The CMU+MIT images are never used: they are the evaluation set.

Augmentation: horizontal flip, HSV jitter, grayscale (half the samples: CMU+MIT is grayscale), blur, noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from iznet.imageio import is_image_file, read_image


#: columns of a face row: 4 box coordinates, then 5 (x, y) landmarks
ROW = 4 + 2 * 5
#: the landmark order after a horizontal flip (left and right eye, left and right mouth corner swap)
FLIP_ORDER = (1, 0, 2, 4, 3)


def face_rows(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) boxes or (N, 14) rows -> (N, 14) float32 rows (landmarks NaN when not given)."""
    b = np.asarray(boxes, np.float32).reshape(len(boxes), -1) if len(boxes) else np.zeros((0, 4), np.float32)
    if b.shape[1] == ROW:
        return b
    out = np.full((len(b), ROW), np.nan, np.float32)
    out[:, :4] = b[:, :4]
    return out


def shift_scale(rows: np.ndarray, scale: float, dx: float, dy: float) -> np.ndarray:
    """Every coordinate of ``rows`` mapped by ``x * scale + dx``, ``y * scale + dy`` (NaN stays NaN)."""
    out = rows * scale
    out[:, 0::2] += dx
    out[:, 1::2] += dy
    return out


def mirror(rows: np.ndarray, width: int) -> np.ndarray:
    """The rows of an image flipped left to right."""
    out = rows.copy()
    out[:, 0::2] = width - rows[:, 0::2]
    out[:, [0, 2]] = out[:, [2, 0]]
    lm = out[:, 4:].reshape(-1, 5, 2)
    out[:, 4:] = lm[:, FLIP_ORDER].reshape(-1, 10)
    return out


@dataclass
class LabelledImage:
    path: Path
    boxes: np.ndarray  # (N, 14) float32 rows (see face_rows); (N, 4) boxes are accepted

    def __post_init__(self) -> None:
        self.boxes = face_rows(self.boxes)

    @property
    def has_landmarks(self) -> bool:
        return bool(np.isfinite(self.boxes[:, 4:]).any()) if len(self.boxes) else False


class SampleSource:
    """Holds the labelled photos, the face-crop bank and the backgrounds; draws augmented samples."""

    def __init__(
        self,
        photos: list[LabelledImage],
        backgrounds: list[Path],
        *,
        size: int = 256,
        min_face: float = 6.0,
        mix: tuple[float, float, float] = (0.4, 0.4, 0.2),
        gray_p: float = 0.5,
        max_cached: int = 6000,
    ):
        if not photos:
            raise ValueError("no labelled photos to train on")
        self.photos = photos
        self.backgrounds = backgrounds
        self.size = size
        self.min_face = min_face
        self.mix = np.asarray(mix, np.float64) / np.sum(mix)
        self.gray_p = gray_p
        # Crops: photos with one confident main face (a face bank for the composites).
        self.crop_bank = [p for p in photos if len(p.boxes) >= 1]
        self._cache: dict[Path, np.ndarray] = {}
        self._bg_cache: dict[Path, np.ndarray] = {}
        self.max_cached = max_cached

    # -- images ------------------------------------------------------------------------------------------
    def _read(self, path: Path) -> np.ndarray:
        im = self._cache.get(path)
        if im is None:
            im = read_image(path)
            if len(self._cache) < self.max_cached and im.size <= 400 * 400 * 3:
                self._cache[path] = im
        return im

    # -- sample kinds ------------------------------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        kind = rng.choice(3, p=self.mix)
        if kind == 0 and self.backgrounds:
            img, boxes = self.composite(rng)
        elif kind == 1 or (kind == 0 and not self.backgrounds):
            img, boxes = self.mosaic(rng)
        else:
            img, boxes = self.photo(rng)
        img, boxes = self.augment(img, boxes, rng)
        boxes = face_rows(boxes)
        keep = ((boxes[:, 2] - boxes[:, 0]) >= self.min_face) & ((boxes[:, 3] - boxes[:, 1]) >= self.min_face)
        return img, boxes[keep].astype(np.float32)

    def _background(self, rng: np.random.Generator) -> np.ndarray:
        s = self.size
        path = self.backgrounds[rng.integers(len(self.backgrounds))]
        bg = self._bg_cache.get(path)
        if bg is None:  # scenes are kept shrunk to 512 px: we crop and shrink them further anyway
            bg = read_image(path)
            f = 512 / max(bg.shape[:2])
            if f < 1:
                bg = cv2.resize(bg, (round(bg.shape[1] * f), round(bg.shape[0] * f)), interpolation=cv2.INTER_AREA)
            self._bg_cache[path] = bg
        h, w = bg.shape[:2]
        crop = int(min(h, w) * rng.uniform(0.4, 1.0))
        y, x = rng.integers(0, h - crop + 1), rng.integers(0, w - crop + 1)
        return cv2.resize(bg[y : y + crop, x : x + crop], (s, s), interpolation=cv2.INTER_AREA)

    def composite(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        s = self.size
        canvas = self._background(rng).astype(np.float32)
        n = int(rng.integers(1, 13))
        boxes: list[list[float]] = []
        patches: list[list[float]] = []
        for _ in range(n):
            src = self.crop_bank[rng.integers(len(self.crop_bank))]
            im = self._read(src.path)
            fb = src.boxes[rng.integers(len(src.boxes))]
            fw, fh = fb[2] - fb[0], fb[3] - fb[1]
            if fw < 16:
                continue
            target_w = math.exp(rng.uniform(math.log(8), math.log(s * 0.5)))
            scale = target_w / fw
            margin = rng.uniform(1.25, 1.7)
            cx, cy = (fb[0] + fb[2]) / 2, (fb[1] + fb[3]) / 2
            half_w, half_h = fw * margin / 2, fh * margin / 2
            x0, y0 = int(max(0, cx - half_w)), int(max(0, cy - half_h))
            x1, y1 = int(min(im.shape[1], cx + half_w)), int(min(im.shape[0], cy + half_h))
            patch = im[y0:y1, x0:x1]
            pw, ph = max(2, round((x1 - x0) * scale)), max(2, round((y1 - y0) * scale))
            if pw >= s or ph >= s:
                continue
            patch = cv2.resize(patch, (pw, ph), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
            for _try in range(10):
                px, py = int(rng.integers(0, s - pw + 1)), int(rng.integers(0, s - ph + 1))
                box = shift_scale(fb[None], scale, px - x0 * scale, py - y0 * scale)[0]
                rect = [px, py, px + pw, py + ph]
                if not patches or _max_overlap(rect, patches) < 0.15:
                    break
            else:
                continue
            mask = np.zeros((ph, pw), np.float32)
            cv2.ellipse(mask, (pw // 2, ph // 2), (max(1, int(pw * 0.46)), max(1, int(ph * 0.48))), 0, 0, 360, 1.0, -1)
            k = max(3, (min(pw, ph) // 6) | 1)
            mask = cv2.GaussianBlur(mask, (k, k), 0)[..., None]
            if rng.random() < 0.3:  # lighting of the scene
                patch = np.clip(patch.astype(np.float32) * rng.uniform(0.6, 1.3), 0, 255)
            roi = canvas[py : py + ph, px : px + pw]
            canvas[py : py + ph, px : px + pw] = roi * (1 - mask) + patch * mask
            boxes.append(box)
            patches.append(rect)
        return canvas.astype(np.uint8), np.asarray(boxes, np.float32).reshape(-1, ROW)

    def mosaic(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        s = self.size
        k = int(rng.choice([1, 2, 2, 3, 3, 4, 4, 5]))
        cell = s // k
        canvas = np.full((s, s, 3), 114, np.uint8)
        if self.backgrounds and rng.random() < 0.5:
            canvas = self._background(rng)
        out = []
        for gy in range(k):
            for gx in range(k):
                if k > 1 and rng.random() < 0.15:
                    continue  # leave some cells as background
                src = self.photos[rng.integers(len(self.photos))]
                im = self._read(src.path)
                h, w = im.shape[:2]
                sc = cell / max(h, w) * rng.uniform(0.75, 1.0)
                nw, nh = max(1, int(w * sc)), max(1, int(h * sc))
                small = cv2.resize(im, (nw, nh), interpolation=cv2.INTER_AREA)
                ox = gx * cell + int(rng.integers(0, cell - nw + 1))
                oy = gy * cell + int(rng.integers(0, cell - nh + 1))
                canvas[oy : oy + nh, ox : ox + nw] = small
                if len(src.boxes):
                    out.append(shift_scale(src.boxes, sc, ox, oy))
        return canvas, (np.concatenate(out) if out else np.zeros((0, ROW), np.float32))

    def photo(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        s = self.size
        src = self.photos[rng.integers(len(self.photos))]
        im = self._read(src.path)
        h, w = im.shape[:2]
        sc = s / max(h, w) * math.exp(rng.uniform(math.log(0.35), math.log(2.0)))
        nw, nh = max(1, int(w * sc)), max(1, int(h * sc))
        im = cv2.resize(im, (nw, nh), interpolation=cv2.INTER_AREA if sc < 1 else cv2.INTER_LINEAR)
        canvas = np.full((s, s, 3), 114, np.uint8)
        # Place (or crop) at a random offset.
        ox = int(rng.integers(min(0, s - nw), max(0, s - nw) + 1))
        oy = int(rng.integers(min(0, s - nh), max(0, s - nh) + 1))
        x0, y0 = max(0, ox), max(0, oy)
        x1, y1 = min(s, ox + nw), min(s, oy + nh)
        canvas[y0:y1, x0:x1] = im[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
        return canvas, _clip_boxes(shift_scale(src.boxes, sc, ox, oy), s)

    # -- augmentation --------------------------------------------------------------------------------------
    def augment(self, img: np.ndarray, boxes: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        s = img.shape[1]
        if rng.random() < 0.5:
            img = img[:, ::-1]
            boxes = mirror(face_rows(boxes), s)
        if rng.random() < self.gray_p:
            g = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_BGR2GRAY)
            img = cv2.cvtColor(g, cv2.COLOR_GRAY2BGR)
        else:
            hsv = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_BGR2HSV).astype(np.float32)
            hsv[..., 0] = (hsv[..., 0] + rng.uniform(-8, 8)) % 180
            hsv[..., 1] *= rng.uniform(0.5, 1.5)
            hsv[..., 2] *= rng.uniform(0.6, 1.4)
            img = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2BGR)
        if rng.random() < 0.5:  # contrast / brightness
            img = np.clip(img.astype(np.float32) * rng.uniform(0.6, 1.4) + rng.uniform(-30, 30), 0, 255).astype(np.uint8)
        if rng.random() < 0.2:
            img = cv2.GaussianBlur(img, (3, 3), rng.uniform(0.3, 1.2))
        if rng.random() < 0.2:
            img = np.clip(img.astype(np.float32) + rng.normal(0, rng.uniform(2, 10), img.shape), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(img), boxes


def _max_overlap(rect, rects) -> float:
    """The largest intersection of ``rect`` with one of ``rects``, over the smaller of the two areas."""
    r = np.asarray(rects, np.float32)
    iw = np.clip(np.minimum(rect[2], r[:, 2]) - np.maximum(rect[0], r[:, 0]), 0, None)
    ih = np.clip(np.minimum(rect[3], r[:, 3]) - np.maximum(rect[1], r[:, 1]), 0, None)
    area = (rect[2] - rect[0]) * (rect[3] - rect[1])
    areas = (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])
    return float((iw * ih / np.maximum(np.minimum(area, areas), 1e-6)).max())


def _clip_boxes(boxes: np.ndarray, s: int, min_visible: float = 0.6) -> np.ndarray:
    """Clip to the canvas; drop boxes with less than ``min_visible`` of their area inside."""
    boxes = face_rows(boxes)
    if len(boxes) == 0:
        return boxes
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    c = boxes.copy()
    c[:, :4] = np.clip(boxes[:, :4], 0, s)
    inside = (c[:, 2] - c[:, 0]).clip(0) * (c[:, 3] - c[:, 1]).clip(0)
    return c[inside >= min_visible * np.maximum(area, 1e-6)]


def photos_from_pseudo_labels(labels_json: Path, root: Path, min_score: float = 0.7) -> list[LabelledImage]:
    from training.detection.pseudo_labels import load_labels

    out = []
    for rel, arr in load_labels(labels_json).items():
        arr = arr[arr[:, 4] >= min_score]  # rows: box, score[, 10 landmark coordinates]
        out.append(LabelledImage(Path(root) / rel, np.concatenate([arr[:, :4], arr[:, 5:]], 1)))
    return out


def photos_from_imglab(xml_path: Path) -> list[LabelledImage]:
    from iznet.detection.evaluate import load_imglab_xml

    data = load_imglab_xml(xml_path)
    return [LabelledImage(p, b) for p, b in zip(data.images, data.boxes)]


def list_backgrounds(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).iterdir() if is_image_file(p)) if Path(folder).is_dir() else []
