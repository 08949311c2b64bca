"""MTCNN (Zhang, Zhang, Li and Qiao 2016, "Joint Face Detection and Alignment using Multi-task Cascaded
Convolutional Networks") in the project's own torch, with the original authors' weights.

The weights are the MIT-licensed P-, R- and O-Net state dicts that the facenet-pytorch 2.6.0 wheel ships
(converted there from the authors' Caffe models); :func:`iznet.imported.imported_file` finds and checks them.
facenet-pytorch's own code is never imported: the networks and the cascade are written here.

The cascade, as in the authors' Matlab ``detect_face.m`` (and its Python ports):

1. **P-Net** (fully convolutional, 12x12 receptive field, stride 2) on an image pyramid: the photo scaled by
   ``12 / min_face_size * factor**k`` while the shorter side stays >= 12 px. Cells with face probability
   >= ``thresholds[0]`` become boxes; NMS 0.5 (IoU) within each scale, then 0.7 over all scales; the boxes
   are moved by P-Net's regression offsets and made square.
2. **R-Net** on 24x24 crops of those boxes (pixels outside the photo are zero): probability >
   ``thresholds[1]``, NMS 0.7, regression, square.
3. **O-Net** on 48x48 crops: probability > ``thresholds[2]``, five landmarks (relative to the crop), the
   last regression, then NMS 0.7 on the *smaller* box's area ("Min"), which removes boxes nested in others.

Networks take RGB scaled as (x - 127.5) / 128; the project's images are BGR and are converted here. Crops
and pyramid levels are resized with area interpolation (bilinear where a crop is enlarged), as in the
reference. Every stage runs in batches: one P-Net pass per pyramid level (photos of the same size stacked),
all crops of a stage through R-Net or O-Net together.

Coordinates: the cascade's box arithmetic is the reference's (1-based, inclusive integer boxes, widths with
+1). What :meth:`MTCNN.detect` returns is converted to the project's conventions: box edges in pixels, the
box of pixels ``x1 .. x2-1`` being ``(x1, x2)`` (as Haar's ``x, x + w``), clipped to the photo; landmarks in
pixel coordinates where pixel ``(i, j)``'s centre is ``(i, j)`` (OpenCV's ``warpAffine``, dlib).

Also here: the 5-point template that puts MTCNN's landmarks where dlib's face chips (size 150, padding 0.25)
have them, and the least-squares similarity transform that warps a face onto it (:func:`align_to_dlib_chip`).
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence

import cv2
import numpy as np
import torch
from torch import nn

from iznet.detection.types import FaceBox
from iznet.errors import UserInputError
from iznet.data.chip import extract_chip, similarity_transform

#: How the nets run: ``onnx`` (onnxruntime graphs written from the same weights, the default) or ``torch``.
BACKENDS = ("onnx", "torch")
DEFAULT_BACKEND = "onnx"
#: Crops per onnxruntime pass, by crop size (R-Net 24, O-Net 48): small batches stay in the cache.
ONNX_BATCH = {24: 16, 48: 4}

#: The weights' package and version (facenet-pytorch's wheel holds the authors' converted Caffe weights).
WEIGHTS_VERSION = "facenet-pytorch-2.6.0"
WEIGHT_KEYS = ("mtcnn-pnet", "mtcnn-rnet", "mtcnn-onet")

#: MTCNN's five landmarks in the pixel coordinates of dlib's face chip of size 150, padding 0.25 (the chip
#: dlib's ResNet face descriptor takes: ``dlib.get_face_chip(img, shape_5, 150, 0.25)``), in the order left
#: eye, right eye, nose, left mouth corner, right mouth corner (left = smaller x); pixel (i, j)'s centre is
#: (i, j). Made by ``training/calibrate_mtcnn_template.py`` (seed 0): on 300 LFW photos (``_0001``) of 300
#: people outside LFW View-2 fold 5, this MTCNN and dlib's HOG detector + 5-point shape predictor on the same
#: face; MTCNN's points mapped into the chip through dlib's own image->chip transform (checked against
#: ``dlib.get_face_chip``: mean absolute difference 0.5/255, 2.4-4.3 for a half-pixel shift), then averaged.
#: Spread over the 300 faces (standard deviation, x / y, chip pixels) on each row.
#: What was measured here (docs/models.md): the dlib PASCAL test photos, and ms per 640x480 photo on one thread,
#: the mean over the 16 group photos of the shared data (bench/mtcnn_speed.py; 70-167 by photo): the onnx
#: backend (the default) beside the torch reference in the same run (the cascade before the onnx backend, the
#: blocked NMS and the copy-free crops: 176).
FIGURES = {"pascal_test": {"recall_iou_0.5": "25/25", "ap_0.5": 1.0}, "ms_per_640x480_1_thread": 112,
           "ms_per_640x480_1_thread_torch": 148}

DLIB_CHIP_TEMPLATE_150 = np.array([
    [47.22, 45.31],   # left eye:          sd 1.94 / 1.77
    [101.51, 45.25],  # right eye:         sd 1.69 / 1.98
    [74.03, 77.21],   # nose:              sd 6.50 / 4.47
    [50.21, 105.21],  # left mouth corner: sd 4.54 / 5.69
    [98.13, 105.20],  # right mouth corner: sd 4.59 / 5.41
], dtype=np.float32)

#: Weights of the least-squares similarity fit onto the template, per point. The eyes are MTCNN's surest
#: points and dlib's chip is set mostly by the eye corners; nose and mouth vary with pose and expression.
#: Chosen by the same script on the same 300 faces (eyes 1; a grid of nose and mouth weights): the chips'
#: corners then land 4.17 px (mean) from dlib's chip corners, against 7.07 px with all five weighing 1.
DLIB_CHIP_WEIGHTS = (1.0, 1.0, 0.3, 0.0, 0.0)


# --- the three networks ---------------------------------------------------------------------------------

class PNet(nn.Module):
    """Proposal net: fully convolutional; per 12x12 window (stride 2) a face probability and box offsets."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, 3)
        self.prelu1 = nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(10, 16, 3)
        self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, 3)
        self.prelu3 = nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, 1)  # face / not face
        self.conv4_2 = nn.Conv2d(32, 4, 1)  # box offsets x1, y1, x2, y2 (fractions of the window)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 3, H, W) -> face probability (N, H', W'), offsets (N, 4, H', W')."""
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return torch.softmax(self.conv4_1(x), dim=1)[:, 1], self.conv4_2(x)


def _caffe_flatten(x: torch.Tensor) -> torch.Tensor:
    """Flatten (N, C, H, W) in the order the converted dense weights expect: (N, W, H, C).

    The weights come from Caffe models that Matlab fed transposed images; the conversion transposed the
    convolution kernels (so the nets take ordinary images), and the dense layers still read W, H, C.
    """
    return x.permute(0, 3, 2, 1).flatten(1)


class RNet(nn.Module):
    """Refine net: a 24x24 crop -> face probability and box offsets."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, 3)
        self.prelu1 = nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(28, 48, 3)
        self.prelu2 = nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(48, 64, 2)
        self.prelu3 = nn.PReLU(64)
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 3, 24, 24) -> face probability (N,), offsets (N, 4)."""
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        x = self.prelu4(self.dense4(_caffe_flatten(x)))
        return torch.softmax(self.dense5_1(x), dim=1)[:, 1], self.dense5_2(x)


class ONet(nn.Module):
    """Output net: a 48x48 crop -> face probability, box offsets and five landmarks."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3)
        self.prelu1 = nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.prelu2 = nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(64, 64, 3)
        self.prelu3 = nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4 = nn.Conv2d(64, 128, 2)
        self.prelu4 = nn.PReLU(128)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)  # x of the 5 points, then y, as fractions of the crop

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(N, 3, 48, 48) -> face probability (N,), offsets (N, 4), landmarks (N, 10)."""
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = self.prelu5(self.dense5(_caffe_flatten(x)))
        return torch.softmax(self.dense6_1(x), dim=1)[:, 1], self.dense6_2(x), self.dense6_3(x)


def load_nets() -> tuple[PNet, RNet, ONet, str]:
    """The three nets with the imported weights (eval mode), and the sha256 of the three files combined.

    A missing facenet-pytorch package raises :class:`iznet.imported.MissingModelError`, which says what to
    install.
    """
    from iznet.imported import imported_file

    nets = (PNet(), RNet(), ONet())
    h = hashlib.sha256()
    for net, key in zip(nets, WEIGHT_KEYS):
        path = imported_file(key)
        h.update(path.read_bytes())
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        net.eval().to(memory_format=torch.channels_last)
        for p in net.parameters():
            p.requires_grad_(False)
    return (*nets, h.hexdigest())


# --- box arithmetic of the cascade (the reference's 1-based, inclusive conventions) ----------------------

def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, method: str = "union") -> np.ndarray:
    """Greedy NMS as MTCNN does it: areas with +1, overlap over the union or (``"min"``) the smaller box.

    The overlaps of each block of :data:`NMS_BLOCK` boxes (in score order) with all later boxes are computed
    at once, with the same float arithmetic as the one-box-at-a-time loop (:func:`nms_reference`), so the
    answer is the same; the Python loop only visits boxes that overlap a later box above ``threshold``."""
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    order = np.argsort(-scores, kind="stable")
    b = boxes[order]
    x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    n = len(b)
    alive = np.ones(n, bool)
    for start in range(0, n, NMS_BLOCK):
        stop = min(n, start + NMS_BLOCK)
        rows = slice(start, stop)
        w = np.maximum(0.0, np.minimum(x2[rows, None], x2[None, start:]) - np.maximum(x1[rows, None], x1[None, start:]) + 1)
        h = np.maximum(0.0, np.minimum(y2[rows, None], y2[None, start:]) - np.maximum(y1[rows, None], y1[None, start:]) + 1)
        inter = w * h
        if method == "min":
            denom = np.minimum(area[rows, None], area[None, start:])
        else:
            denom = area[rows, None] + area[None, start:] - inter
        over = np.triu(inter / denom > threshold, 1)  # row r: box start+r against boxes start.. (later ones)
        for r in np.nonzero(over.any(axis=1))[0]:
            if alive[start + r]:
                alive[start:] &= ~over[r]
    return order[alive].astype(np.int64)


#: Boxes per block of overlaps in :func:`nms` (a block is NMS_BLOCK x N floats).
NMS_BLOCK = 512


def nms_reference(boxes: np.ndarray, scores: np.ndarray, threshold: float, method: str = "union") -> np.ndarray:
    """:func:`nms` one kept box at a time, as the reference writes it (the tests compare the two)."""
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        denom = np.minimum(area[i], area[rest]) if method == "min" else area[i] + area[rest] - inter
        order = rest[inter / denom <= threshold]
    return np.asarray(keep, np.int64)


def _square(boxes: np.ndarray) -> np.ndarray:
    """``rerec``: the square of side max(w, h) around each box's centre (w, h without +1, as the reference)."""
    out = boxes.copy()
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def _regress(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """``bbreg``: move each edge by its offset times the box's (+1) width or height."""
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    return boxes + offsets * np.stack([w, h, w, h], axis=1)


def _crops(image: np.ndarray, boxes: np.ndarray, size: int, out: np.ndarray | None = None) -> np.ndarray:
    """Crops of the integer boxes (1-based, inclusive) resized to ``size``; pixels outside the photo are 0.

    ``image`` is float32 RGB already scaled for the nets, so "0" is written as the scaled black. A box inside
    the photo is resized straight from the photo (a view, no copy); one that crosses the border is padded
    with black first, as the reference does. Written into ``out`` ((N, size, size, 3) float32) when given.
    """
    h, w = image.shape[:2]
    if out is None:
        out = np.empty((len(boxes), size, size, 3), np.float32)
    b = boxes.astype(np.int64)
    x0, y0, x1, y1 = b[:, 0] - 1, b[:, 1] - 1, b[:, 2], b[:, 3]   # 0-based, end-exclusive
    inside = (x0 >= 0) & (y0 >= 0) & (x1 <= w) & (y1 <= h)
    dsize, area = (size, size), cv2.INTER_AREA
    for k, a, c, bb, d in zip(np.nonzero(inside)[0].tolist(), y0[inside].tolist(), y1[inside].tolist(),
                              x0[inside].tolist(), x1[inside].tolist()):
        cv2.resize(image[a:c, bb:d], dsize, dst=out[k], interpolation=area)
    black = (0.0 - 127.5) * 0.0078125
    for k in np.nonzero(~inside)[0].tolist():
        bx0, by0, bx1, by1 = int(x0[k]), int(y0[k]), int(x1[k]), int(y1[k])
        src = np.full((by1 - by0, bx1 - bx0, 3), black, np.float32)
        ix0, iy0, ix1, iy1 = max(bx0, 0), max(by0, 0), min(bx1, w), min(by1, h)
        if ix1 > ix0 and iy1 > iy0:
            src[iy0 - by0:iy1 - by0, ix0 - bx0:ix1 - bx0] = image[iy0:iy1, ix0:ix1]
        cv2.resize(src, dsize, dst=out[k], interpolation=area)
    return out


def _to_tensor(batch: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) -> (N, 3, H, W) without a copy: channels-last memory, which the nets are set to (torch's
    CPU max pooling and convolutions run 1.5-3.5x faster so)."""
    return torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2)


def pyramid_scales(height: int, width: int, min_face_size: float, factor: float) -> list[float]:
    """The P-Net scales: ``12 / min_face_size * factor**k`` while the scaled shorter side is >= 12 px."""
    m = 12.0 / min_face_size
    minl = min(height, width) * m
    scales, k = [], 0
    while minl >= 12:
        scales.append(m * factor**k)
        minl *= factor
        k += 1
    return scales


# --- the detector ----------------------------------------------------------------------------------------

class MTCNN:
    """The MTCNN cascade behind the project's :class:`~iznet.detection.types.Detector` protocol.

    ``detect(image_bgr) -> list[FaceBox]``: boxes in pixels, ``score`` = O-Net's face probability, five
    ``landmarks`` (left eye, right eye, nose, left and right mouth corner; left = smaller x), highest score
    first. ``detect_batch(images)`` does several photos in the same passes.

    Knobs: ``min_face_size`` (px, smallest face searched; smaller is slower), ``thresholds`` (P-, R-, O-Net
    probabilities), ``factor`` (pyramid step), ``max_side`` (photos whose longer side exceeds it are
    detected on a copy downscaled to it, and the results mapped back: bounded time and memory; faces then
    need ``min_face_size`` px *in the copy*), ``threads`` (sets torch's intra-op threads, process-wide,
    when given; onnxruntime's per session, 1 when not), ``batch_size`` (at most this many crops per R-/O-Net
    pass), ``backend``: ``onnx`` (the default; :mod:`iznet.detection.mtcnn_onnx`, the same nets as
    onnxruntime graphs, about twice as fast on one thread) or ``torch`` (the nets here: the reference).
    ``$IZNET_MTCNN_BACKEND`` sets the default. Both find the same faces (boxes agree to float rounding).
    """

    name = "mtcnn"

    def __init__(
        self,
        min_face_size: float = 20,
        thresholds: Sequence[float] = (0.6, 0.7, 0.7),
        factor: float = 0.709,
        threads: int | None = None,
        max_side: int | None = 1280,
        batch_size: int = 256,
        backend: str | None = None,
    ):
        if min_face_size <= 0:
            raise UserInputError(f"min_face_size must be > 0, not {min_face_size}")
        if len(thresholds) != 3 or not all(0 <= t <= 1 for t in thresholds):
            raise UserInputError(f"thresholds must be three probabilities, not {thresholds!r}")
        if not 0 < factor < 1:
            raise UserInputError(f"factor must be in (0, 1), not {factor}")
        if max_side is not None and max_side < 12:
            raise UserInputError(f"max_side must be >= 12 px (or None), not {max_side}")
        backend = (backend or os.environ.get("IZNET_MTCNN_BACKEND") or DEFAULT_BACKEND).strip().lower()
        if backend not in BACKENDS:
            raise UserInputError(f"MTCNN backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
        self.min_face_size = float(min_face_size)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.factor = float(factor)
        self.max_side = None if max_side is None else int(max_side)
        self.batch_size = max(1, int(batch_size))
        self.threads = threads
        if threads is not None:
            torch.set_num_threads(max(1, int(threads)))
        self.pnet, self.rnet, self.onet, digest = load_nets()
        self.backend = backend
        self._onnx = None
        if backend == "onnx":
            from iznet.detection.mtcnn_onnx import OnnxNets

            self._onnx = OnnxNets(self.pnet, self.rnet, self.onet, threads)
        self.version = {"name": "mtcnn", "version": WEIGHTS_VERSION, "digest": "sha256:" + digest,
                        "kind": "detector"}

    # -- public --

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        return self.detect_batch([image])[0]

    @torch.inference_mode()
    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[FaceBox]]:
        """Faces of several photos (any sizes); same-sized photos share their P-Net passes."""
        prepared = [self._prepare(im) for im in images]
        if not prepared:
            return []
        found = self._cascade([p[0] for p in prepared])
        return [self._to_faces(boxes, points, scores, back, shape)
                for (boxes, points, scores), (_, back, shape) in zip(found, prepared)]

    # -- steps --

    def _prepare(self, image: np.ndarray) -> tuple[np.ndarray, float, tuple[int, int]]:
        """BGR/gray uint8 -> scaled float32 RGB (downscaled to ``max_side``), the factor back, the size."""
        image = np.asarray(image)
        if image.dtype != np.uint8:
            raise UserInputError(f"detect expects uint8 images, not {image.dtype}")
        if image.ndim == 3 and image.shape[2] == 1:
            image = image[:, :, 0]
        if image.ndim == 2:
            rgb = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
        elif image.ndim == 3 and image.shape[2] == 3:
            rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        elif image.ndim == 3 and image.shape[2] == 4:
            rgb = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
        else:
            raise UserInputError(f"detect expects a BGR (H, W, 3) or grayscale (H, W) image, not shape {image.shape}")
        h, w = rgb.shape[:2]
        if h < 1 or w < 1:
            raise UserInputError(f"image has no pixels ({w}x{h})")
        back = 1.0
        if self.max_side is not None and max(h, w) > self.max_side:
            s = self.max_side / max(h, w)
            sw, sh = max(1, round(w * s)), max(1, round(h * s))
            rgb = cv2.resize(rgb, (sw, sh), interpolation=cv2.INTER_AREA)
            back = w / sw  # the same as h / sh up to rounding; one factor keeps faces square
        return (rgb.astype(np.float32) - 127.5) * 0.0078125, back, (h, w)

    def _cascade(self, images: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per image: boxes (N, 4) float (1-based), points (N, 5, 2) (0-based pixel centres), scores (N,)."""
        _, t2, t3 = self.thresholds
        boxes = self._stage1(images)

        # stage 2: R-Net on 24x24 crops of all images together
        stage2 = []
        for i, b in enumerate(boxes):
            if len(b):
                stage2.append((i, np.fix(b)))
        probs, offsets = self._run(self.rnet, images, stage2, 24)
        boxes = [np.zeros((0, 4), np.float32) for _ in images]
        for (i, b), p, o in zip(stage2, probs, offsets):
            ok = p > t2
            b, p, o = b[ok], p[ok], o[ok]
            keep = nms(b, p, 0.7)
            boxes[i] = _square(_regress(b[keep], o[keep]))

        # stage 3: O-Net on 48x48 crops
        stage3 = [(i, np.fix(b)) for i, b in enumerate(boxes) if len(b)]
        probs, offsets, marks = self._run(self.onet, images, stage3, 48)
        out = [(np.zeros((0, 4), np.float32), np.zeros((0, 5, 2), np.float32), np.zeros(0, np.float32))
               for _ in images]
        for (i, b), p, o, lm in zip(stage3, probs, offsets, marks):
            ok = p > t3
            b, p, o, lm = b[ok], p[ok], o[ok], lm[ok]
            w = (b[:, 2] - b[:, 0] + 1)[:, None]
            h = (b[:, 3] - b[:, 1] + 1)[:, None]
            pts = np.stack([w * lm[:, :5] + b[:, :1] - 1, h * lm[:, 5:] + b[:, 1:2] - 1], axis=2)
            b = _regress(b, o)
            keep = nms(b, p, 0.7, "min")
            out[i] = (b[keep], pts[keep], p[keep])
        return out

    def _stage1(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """P-Net on every pyramid level; per image the calibrated, squared candidate boxes (1-based)."""
        t1 = self.thresholds[0]
        per_image: list[list[np.ndarray]] = [[] for _ in images]
        groups: dict[tuple[int, int], list[int]] = {}
        for i, im in enumerate(images):
            groups.setdefault(im.shape[:2], []).append(i)
        for (h, w), members in groups.items():
            for scale in pyramid_scales(h, w, self.min_face_size, self.factor):
                hs, ws = int(math.ceil(h * scale)), int(math.ceil(w * scale))
                for start in range(0, len(members), 8):  # at most 8 photos per pass: bounded memory
                    chunk = members[start:start + 8]
                    batch = np.stack([cv2.resize(images[i], (ws, hs), interpolation=cv2.INTER_AREA)
                                      for i in chunk])
                    prob, reg = self._pnet(batch)
                    for j, i in enumerate(chunk):
                        b = _windows(prob[j], reg[j], scale, t1)
                        if len(b):
                            per_image[i].append(b[nms(b[:, :4], b[:, 4], 0.5)])
        result = []
        for cands in per_image:
            if not cands:
                result.append(np.zeros((0, 4), np.float32))
                continue
            b = np.concatenate(cands)
            b = b[nms(b[:, :4], b[:, 4], 0.7)]
            # calibrate with P-Net's offsets (the reference uses widths without +1 here)
            w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
            cal = b[:, :4] + b[:, 5:9] * np.stack([w, h, w, h], axis=1)
            result.append(_square(cal))
        return result

    def _pnet(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, H, W, 3) scaled RGB -> face probability (N, H', W'), offsets (N, 4, H', W')."""
        if self._onnx is not None:
            return self._onnx.pnet(batch.transpose(0, 3, 1, 2))
        prob, reg = self.pnet(_to_tensor(batch))
        return prob.numpy(), reg.numpy()

    def _run(self, net: nn.Module, images: list[np.ndarray], items: list[tuple[int, np.ndarray]], size: int):
        """Crops of all ``items`` (image index, boxes) through ``net`` in batches; outputs split per item."""
        outputs = 3 if isinstance(net, ONet) else 2
        if not items:
            return [[] for _ in range(outputs)]
        bounds = np.cumsum([0] + [len(b) for _, b in items])
        crops = np.empty((int(bounds[-1]), size, size, 3), np.float32)
        for k, (i, b) in enumerate(items):
            _crops(images[i], b, size, crops[bounds[k]:bounds[k + 1]])
        outs = []
        if self._onnx is not None:
            # Small batches keep each layer's output in the cache (measured: bench/mtcnn_speed.py).
            step = min(self.batch_size, ONNX_BATCH[size])
            run = self._onnx.onet if isinstance(net, ONet) else self._onnx.rnet
            chw = crops.transpose(0, 3, 1, 2)
            for start in range(0, len(crops), step):
                outs.append(run(chw[start:start + step]))
        else:
            for start in range(0, len(crops), self.batch_size):
                outs.append([o.numpy() for o in net(_to_tensor(crops[start:start + self.batch_size]))])
        merged = [np.concatenate(parts) for parts in zip(*outs)]
        return [[m[bounds[k]:bounds[k + 1]] for k in range(len(items))] for m in merged]

    def _to_faces(self, boxes: np.ndarray, points: np.ndarray, scores: np.ndarray, back: float,
                  shape: tuple[int, int]) -> list[FaceBox]:
        """Reference coordinates -> project ones (edges, clipped; pixel-centre landmarks), mapped back from
        the downscaled copy by ``back``; highest score first."""
        h, w = shape
        faces = []
        for (x1, y1, x2, y2), pts, s in zip(boxes, points, scores):
            # 1-based inclusive (x1 .. x2) -> edges (x1 - 1, x2)
            bx = np.clip(np.array([x1 - 1, x2]) * back, 0, w)
            by = np.clip(np.array([y1 - 1, y2]) * back, 0, h)
            if bx[1] - bx[0] < 1 or by[1] - by[0] < 1:
                continue
            lm = ((pts + 0.5) * back - 0.5).astype(np.float32)
            faces.append(FaceBox(float(bx[0]), float(by[0]), float(bx[1]), float(by[1]), float(s), lm))
        return sorted(faces, key=lambda f: -f.score)


def _windows(prob: np.ndarray, reg: np.ndarray, scale: float, threshold: float) -> np.ndarray:
    """``generateBoundingBox``: P-Net cells over the threshold -> rows x1, y1, x2, y2, score, 4 offsets, in
    the photo's 1-based pixels (a cell at (x, y) covers scaled pixels 2x+1 .. 2x+12)."""
    ys, xs = np.nonzero(prob >= threshold)
    if len(ys) == 0:
        return np.zeros((0, 9), np.float32)
    cell = np.stack([xs, ys], axis=1).astype(np.float32)
    q1 = np.fix((2 * cell + 1) / scale)
    q2 = np.fix((2 * cell + 12) / scale)
    return np.concatenate([q1, q2, prob[ys, xs][:, None], reg[:, ys, xs].T], axis=1).astype(np.float32)


# --- alignment onto dlib's face chip ---------------------------------------------------------------------

def dlib_chip_template(size: int = 150, padding: float = 0.25) -> np.ndarray:
    """:data:`DLIB_CHIP_TEMPLATE_150` for another chip size and padding (dlib's chips scale with
    ``(padding + p) / (1 + 2 padding) * size`` in a normalised face frame; the pixel grid spans ``size - 1``)."""
    unit = DLIB_CHIP_TEMPLATE_150.astype(np.float64) / (150 - 1) * 1.5 - 0.25  # normalised face frame
    return ((unit + padding) / (1 + 2 * padding) * (size - 1)).astype(np.float32)


def dlib_chip_matrix_from_mtcnn(landmarks: np.ndarray, size: int = 150, padding: float = 0.25,
                                weights: Sequence[float] | None = DLIB_CHIP_WEIGHTS) -> np.ndarray:
    """The 2x3 image->chip matrix that puts MTCNN's five ``landmarks`` on dlib's chip template (weighted
    least squares, :data:`DLIB_CHIP_WEIGHTS` by default; ``None`` weighs the five alike)."""
    return similarity_transform(landmarks, dlib_chip_template(size, padding), weights)


def align_to_dlib_chip(image: np.ndarray, landmarks: np.ndarray, size: int = 150, padding: float = 0.25,
                       weights: Sequence[float] | None = DLIB_CHIP_WEIGHTS) -> tuple[np.ndarray, np.ndarray]:
    """Warp ``image`` so that MTCNN's five ``landmarks`` land on dlib's chip template: the chip (size x
    size, bilinear, black outside the photo) and its 2x3 image->chip matrix."""
    m = dlib_chip_matrix_from_mtcnn(landmarks, size, padding, weights)
    return extract_chip(image, m, size), m
