"""Running the trained YOLO-style face detector: letterbox, decoding, NMS, and loading from weights + card.

Box decoding (per anchor, per grid cell ``(cx, cy)`` of stride ``s``; the bounded YOLOv5 form of YOLOv3's):

    x, y = (2 * sigmoid(t_xy) - 0.5 + (cx, cy)) * s
    w, h = (2 * sigmoid(t_wh)) ** 2 * anchor_wh
    objectness = sigmoid(t_obj)

A saved detector is two files: ``NAME.pt`` (a ``state_dict``, loaded with ``weights_only=True``) and
``NAME.json`` (the card: architecture, anchors, input size, thresholds, how it was trained).
``load_detector("NAME.pt")`` (or the ``.json``, or a directory holding ``detector.pt``) returns a
:class:`YoloDetector`, which implements :class:`iznet.detection.types.Detector`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from iznet.detection.boxes import nms
from iznet.detection.darknet import STRIDES, YoloFaceNet, build_model
from iznet.detection.types import FaceBox
from iznet.errors import NotFoundError, UserInputError

CARD_FORMAT = "iznet-yolo-face/1"
PAD_VALUE = 114


@dataclass
class Letterbox:
    """How an image was mapped into the network input: ``input = image * scale + (pad_x, pad_y)``."""

    scale: float
    pad_x: int
    pad_y: int

    def to_image(self, boxes: np.ndarray) -> np.ndarray:
        out = np.asarray(boxes, np.float32).copy()
        out[..., 0::2] = (out[..., 0::2] - self.pad_x) / self.scale
        out[..., 1::2] = (out[..., 1::2] - self.pad_y) / self.scale
        return out


def letterbox(
    image: np.ndarray, size: int | tuple[int, int], *, stride: int = 32, upscale: bool = True
) -> tuple[np.ndarray, Letterbox]:
    """Resize keeping the aspect so the image fits ``size`` (an int = the longer side, or (w, h) = the canvas),
    then pad with grey to the canvas (a multiple of ``stride``). Returns the canvas and the mapping."""
    h, w = image.shape[:2]
    if isinstance(size, int):
        scale = size / max(h, w)
        if not upscale:
            scale = min(scale, 1.0)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        cw, ch = -(-nw // stride) * stride, -(-nh // stride) * stride
    else:
        cw, ch = size
        if cw % stride or ch % stride:
            raise UserInputError(f"canvas {cw}x{ch} must be a multiple of the stride {stride}")
        scale = min(cw / w, ch / h)
        if not upscale:
            scale = min(scale, 1.0)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (nw, nh), interpolation=interp) if (nw, nh) != (w, h) else image
    px, py = (cw - nw) // 2, (ch - nh) // 2
    canvas = np.full((ch, cw, 3), PAD_VALUE, dtype=np.uint8)
    canvas[py : py + nh, px : px + nw] = resized
    return canvas, Letterbox(scale, px, py)


def to_tensor(images_bgr: list[np.ndarray]) -> torch.Tensor:
    """(B, 3, H, W) float RGB in 0..1 from same-sized BGR uint8 images."""
    x = np.stack([im[:, :, ::-1] for im in images_bgr]).transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(x)).float().div_(255.0)


def make_grid(h: int, w: int, device=None) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    return torch.stack([xs, ys], -1).float()  # (H, W, 2) as (cx, cy)


def decode_level(raw: torch.Tensor, anchors: torch.Tensor, stride: int) -> torch.Tensor:
    """Raw (B, A, H, W, C) -> (B, A, H, W, C) with boxes as (cx, cy, w, h) pixels, objectness as probability,
    landmarks (if any) as pixels."""
    b, a, h, w, c = raw.shape
    grid = make_grid(h, w, raw.device).view(1, 1, h, w, 2)
    anc = anchors.view(1, a, 1, 1, 2).to(raw)
    xy = (raw[..., 0:2].sigmoid() * 2 - 0.5 + grid) * stride
    wh = (raw[..., 2:4].sigmoid() * 2) ** 2 * anc
    obj = raw[..., 4:5].sigmoid()
    parts = [xy, wh, obj]
    if c > 5:  # landmarks: offsets from the cell centre in anchor units
        lm = raw[..., 5:].view(b, a, h, w, -1, 2) * anc.unsqueeze(-2) + ((grid + 0.5) * stride).unsqueeze(-2)
        parts.append(lm.flatten(-2))
    return torch.cat(parts, -1)


def decode(raws: list[torch.Tensor], anchors: torch.Tensor, strides=STRIDES) -> torch.Tensor:
    """All levels -> (B, N, C) with rows (x1, y1, x2, y2, score, landmarks...)."""
    outs = []
    for lvl, raw in enumerate(raws):
        d = decode_level(raw, anchors[lvl], strides[lvl])
        b = d.shape[0]
        d = d.view(b, -1, d.shape[-1])
        xy, wh = d[..., 0:2], d[..., 2:4]
        outs.append(torch.cat([xy - wh / 2, xy + wh / 2, d[..., 4:]], -1))
    return torch.cat(outs, 1)


def postprocess(pred: np.ndarray, conf_threshold: float, iou_threshold: float, max_detections: int) -> np.ndarray:
    """One image's decoded rows (N, C) -> the kept rows after the confidence threshold and NMS."""
    pred = pred[pred[:, 4] >= conf_threshold]
    if len(pred) > 4 * max_detections:  # NMS is quadratic: keep the best candidates only
        pred = pred[np.argsort(-pred[:, 4])[: 4 * max_detections]]
    keep = nms(pred[:, :4], pred[:, 4], iou_threshold)[:max_detections]
    return pred[keep]


def decode_candidates(raws: list[np.ndarray], anchors: np.ndarray, conf_threshold: float,
                      strides=STRIDES) -> list[np.ndarray]:
    """:func:`decode`'s rows, per image, for the cells whose objectness reaches ``conf_threshold`` only, in
    numpy: most of the grid is background and is never decoded (a tenth of a millisecond instead of two)."""
    n_img, n_col = raws[0].shape[0], raws[0].shape[-1]
    conf = min(max(conf_threshold, 1e-7), 1 - 1e-7)
    logit = np.log(conf / (1 - conf))  # sigmoid(t) >= conf  <=>  t >= logit
    found: list[list[np.ndarray]] = [[] for _ in range(n_img)]
    for lvl, raw in enumerate(raws):
        idx = np.nonzero(raw[..., 4] >= logit)  # (image, anchor, y, x) of the candidates
        if not len(idx[0]):
            continue
        t = raw[idx].astype(np.float32)
        sig = 1.0 / (1.0 + np.exp(-t[:, :5]))
        anc = np.asarray(anchors[lvl], np.float32)[idx[1]]
        cell = np.stack([idx[3], idx[2]], 1).astype(np.float32)  # (cx, cy)
        xy = (sig[:, 0:2] * 2 - 0.5 + cell) * strides[lvl]
        wh = (sig[:, 2:4] * 2) ** 2 * anc
        cols = [xy - wh / 2, xy + wh / 2, sig[:, 4:5]]
        if n_col > 5:  # landmarks: offsets from the cell centre in anchor units
            lm = t[:, 5:].reshape(len(t), -1, 2) * anc[:, None] + ((cell + 0.5) * strides[lvl])[:, None]
            cols.append(lm.reshape(len(t), -1))
        rows = np.concatenate(cols, 1)
        for b in np.unique(idx[0]):
            found[b].append(rows[idx[0] == b])
    return [np.concatenate(f) if f else np.zeros((0, n_col), np.float32) for f in found]


def to_blob(images_bgr: list[np.ndarray]) -> np.ndarray:
    """:func:`to_tensor` as a float32 numpy array, in one OpenCV call."""
    return cv2.dnn.blobFromImages(list(images_bgr), 1.0 / 255.0, swapRB=True)


class TorchEngine:
    """The network in torch: NCHW float32 in, the raw levels out."""

    name = "torch"

    def __init__(self, model: YoloFaceNet):
        self.model = model.eval()

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        with torch.inference_mode():
            return [r.numpy() for r in self.model(torch.from_numpy(x))]


class OnnxEngine:
    """The same network through onnxruntime (exported once per weights file; about 1.5x torch on one thread)."""

    name = "onnx"

    def __init__(self, path: Path, threads: int | None = None):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = max(1, threads or 1)
        so.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {self.input: x})


def export_detector_onnx(model: YoloFaceNet, path: Path, atol: float = 1e-3) -> Path:
    """``model`` as ONNX at ``path`` (any batch and canvas size), checked against torch on a random canvas."""
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.partial")  # processes exporting at once do not collide
    x = torch.rand(1, 3, 160, 224)
    try:
        with torch.inference_mode():
            torch.onnx.export(model.eval(), x, str(tmp), input_names=["images"],
                              output_names=[f"stride{s}" for s in STRIDES], opset_version=17, dynamo=False,
                              dynamic_axes={"images": {0: "batch", 2: "height", 3: "width"}})
            ref = [r.numpy() for r in model(x)]
        got = OnnxEngine(tmp)(x.numpy())
        err = max(float(np.abs(a - b).max()) for a, b in zip(ref, got))
        if err > atol:
            raise RuntimeError(f"the ONNX export of the detector differs from torch by {err:.2g}")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


class YoloDetector:
    """The trained face detector behind the :class:`~iznet.detection.types.Detector` protocol.

    Two looks at each photo: the main pass at ``input_size``, and a coarse pass at ``coarse_size`` (the
    side of the training samples, from the card). The network only ever saw faces smaller than its training
    samples, so a face that fills a portrait, upscaled to the main size, is bigger than anything it learnt;
    in the coarse pass that face is training-sized. Only the coarse pass's big faces (at least half a
    training sample, in main-pass pixels) join the main pass's, so its small false alarms stay out; NMS merges
    the two. It costs (coarse / main)^2 of the main pass, about a tenth.
    """

    def __init__(
        self,
        model: YoloFaceNet,
        anchors: np.ndarray | torch.Tensor,
        *,
        name: str = "iznet-yolo",
        input_size: int = 416,
        coarse_size: int = 0,
        conf_threshold: float = 0.3,
        iou_threshold: float = 0.4,
        max_detections: int = 300,
        upscale: bool = True,
        card: dict | None = None,
        engine: TorchEngine | OnnxEngine | None = None,
    ):
        self.model = model.eval()
        self.engine = engine or TorchEngine(self.model)
        self.backend = self.engine.name
        self.anchors = torch.as_tensor(np.asarray(anchors, np.float32)).view(len(STRIDES), -1, 2)
        self.name = name
        self.input_size = int(input_size)
        self.coarse_size = int(coarse_size or 0)  # 0: the main pass only
        self.conf_threshold = float(conf_threshold)
        self.iou_threshold = float(iou_threshold)
        self.max_detections = int(max_detections)
        self.upscale = upscale
        self.card = card or {}

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        return self.detect_batch([image])[0]

    def _pass(self, images: list[np.ndarray], size: int) -> list[tuple[np.ndarray, float]]:
        """One forward pass at ``size``: per image, its rows above the threshold in image coordinates, and the
        scale the image had in that pass."""
        if len(images) == 1:
            canvases, boxes = zip(letterbox(images[0], size, upscale=self.upscale))
        else:
            side = max(-(-round(max(im.shape[:2]) * (size / max(im.shape[:2]))) // 32) * 32 for im in images)
            canvases, boxes = zip(*(letterbox(im, (side, side), upscale=self.upscale) for im in images))
        found = decode_candidates(self.engine(to_blob(canvases)), self.anchors.numpy(), self.conf_threshold)
        out = []
        for p, lb in zip(found, boxes):
            if len(p) > 4 * self.max_detections:  # NMS is quadratic: keep the best candidates only
                p = p[np.argsort(-p[:, 4])[: 4 * self.max_detections]]
            rows = p.copy()
            rows[:, :4] = lb.to_image(p[:, :4])
            if p.shape[1] > 5:
                rows[:, 5:] = lb.to_image(p[:, 5:])
            out.append((rows, lb.scale))
        return out

    def detect_batch(self, images: list[np.ndarray]) -> list[list[FaceBox]]:
        """Several images in one forward pass per scale (each letterboxed onto a common square canvas)."""
        if not images:
            return []
        for im in images:
            if im is None or im.ndim != 3 or im.shape[2] != 3 or im.dtype != np.uint8 or min(im.shape[:2]) < 1:
                raise UserInputError("detect expects BGR uint8 images shaped (H, W, 3)")
        passes = self._pass(images, self.input_size)
        if 0 < self.coarse_size < self.input_size:
            for k, (rows, _) in enumerate(self._pass(images, self.coarse_size)):
                main_rows, main_scale = passes[k]
                side = np.minimum(rows[:, 2] - rows[:, 0], rows[:, 3] - rows[:, 1]) * main_scale
                big = rows[side >= 0.5 * self.coarse_size]
                passes[k] = (np.concatenate([main_rows, big]), main_scale)
        results = []
        for (rows, _), im in zip(passes, images):
            kept = rows[nms(rows[:, :4], rows[:, 4], self.iou_threshold)[: self.max_detections]] if len(rows) else rows
            kept = _drop_nested(kept)
            h, w = im.shape[:2]
            faces = []
            for row in kept:
                x1, x2 = np.clip([row[0], row[2]], 0, w)
                y1, y2 = np.clip([row[1], row[3]], 0, h)
                if x2 - x1 < 1 or y2 - y1 < 1:  # a box in the letterbox padding
                    continue
                lm = row[5:].reshape(-1, 2).copy() if len(row) > 5 else None
                faces.append(FaceBox(float(x1), float(y1), float(x2), float(y2), float(row[4]), lm))
            results.append(faces)
        return results


def _drop_nested(rows: np.ndarray, inside: float = 0.7) -> np.ndarray:
    """Drop a box that lies mostly (``inside`` of its area) within a better-scored one: faces do not nest, so
    it is a part of that face (an eye and nose region, a chin) seen as a face of its own. ``rows`` are sorted
    best first, as NMS returns them."""
    keep: list[int] = []
    for i, r in enumerate(rows):
        area = max(1e-6, (r[2] - r[0]) * (r[3] - r[1]))
        nested = False
        for j in keep:
            q = rows[j]
            iw = min(r[2], q[2]) - max(r[0], q[0])
            ih = min(r[3], q[3]) - max(r[1], q[1])
            if iw > 0 and ih > 0 and iw * ih / area >= inside:
                nested = True
                break
        if not nested:
            keep.append(i)
    return rows[keep]


def save_detector(model: YoloFaceNet, card: dict, path: str | Path) -> Path:
    """Write ``path`` (.pt state_dict) and the card beside it (.json)."""
    path = Path(path)
    if path.suffix != ".pt":
        path = path.with_suffix(".pt")
    path.parent.mkdir(parents=True, exist_ok=True)
    card = {"format": CARD_FORMAT, **card, "weights": path.name}
    torch.save(model.state_dict(), path)
    path.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    return path


def _resolve(path: Path) -> tuple[Path, Path]:
    if path.is_dir():
        path = path / "detector.pt"
    if path.suffix == ".json":
        card_path = path
        weights = path.with_suffix(".pt")
    else:
        weights, card_path = path, path.with_suffix(".json")
    if not weights.is_file():
        raise NotFoundError(f"detector weights {weights} not found")
    if not card_path.is_file():
        raise NotFoundError(f"detector card {card_path} not found (the JSON written beside the weights)")
    return weights, card_path


def load_detector(path: str | Path, *, backend: str = "auto", threads: int | None = None,
                  **overrides) -> YoloDetector:
    """A trained detector from its weights + card; ``overrides`` replace card values (e.g. ``conf_threshold``).

    ``backend``: ``torch``, ``onnx`` (exported once into ``$IZNET_CACHE/onnx``, keyed by the weights' hash),
    or ``auto`` (onnx when onnxruntime is installed). ``threads``: onnxruntime's threads (torch keeps the
    process's setting)."""
    if backend not in ("auto", "torch", "onnx"):
        raise UserInputError(f"detector backend {backend!r}: auto, torch or onnx")
    weights, card_path = _resolve(Path(path))
    try:
        card = json.loads(card_path.read_text())
    except json.JSONDecodeError as exc:
        raise UserInputError(f"{card_path} is not valid JSON: {exc}") from None
    if card.get("format") != CARD_FORMAT:
        raise UserInputError(f"{card_path}: not an IZ*Net detector card (format {card.get('format')!r})")
    model = build_model(card["size"], num_anchors=card["num_anchors"], num_landmarks=card.get("num_landmarks", 0))
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as exc:  # a truncated or foreign file
        raise UserInputError(f"cannot load detector weights {weights}: {exc}") from None
    opts = {
        "name": card.get("name", weights.stem),
        "input_size": card.get("input_size", 416),
        # the coarse pass for big faces: at the training samples' side, unless the card says otherwise
        "coarse_size": card.get("coarse_size", card.get("train", {}).get("img_size", 0)),
        "conf_threshold": card.get("conf_threshold", 0.3),
        "iou_threshold": card.get("iou_threshold", 0.4),
    }
    opts.update({k: v for k, v in overrides.items() if v is not None})
    if backend == "auto":
        import importlib.util

        backend = "onnx" if importlib.util.find_spec("onnxruntime") else "torch"
    engine = None
    if backend == "onnx":
        import hashlib

        from iznet.config import cache_dir

        key = hashlib.sha256(weights.read_bytes()).hexdigest()[:16]
        onnx_path = cache_dir() / "onnx" / f"detector-{key}.onnx"
        if not onnx_path.is_file():
            export_detector_onnx(model, onnx_path)
        engine = OnnxEngine(onnx_path, threads)
    return YoloDetector(model, np.asarray(card["anchors"], np.float32), card=card, engine=engine, **opts)
