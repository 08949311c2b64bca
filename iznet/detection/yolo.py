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


class YoloDetector:
    """The trained face detector behind the :class:`~iznet.detection.types.Detector` protocol."""

    def __init__(
        self,
        model: YoloFaceNet,
        anchors: np.ndarray | torch.Tensor,
        *,
        name: str = "iznet-yolo",
        input_size: int = 416,
        conf_threshold: float = 0.3,
        iou_threshold: float = 0.4,
        max_detections: int = 300,
        upscale: bool = True,
        card: dict | None = None,
    ):
        self.model = model.eval()
        self.anchors = torch.as_tensor(np.asarray(anchors, np.float32)).view(len(STRIDES), -1, 2)
        self.name = name
        self.input_size = int(input_size)
        self.conf_threshold = float(conf_threshold)
        self.iou_threshold = float(iou_threshold)
        self.max_detections = int(max_detections)
        self.upscale = upscale
        self.card = card or {}

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        return self.detect_batch([image])[0]

    @torch.inference_mode()
    def detect_batch(self, images: list[np.ndarray]) -> list[list[FaceBox]]:
        """Several images in one forward pass (each letterboxed onto a common square canvas)."""
        if not images:
            return []
        for im in images:
            if im is None or im.ndim != 3 or im.shape[2] != 3 or im.dtype != np.uint8 or min(im.shape[:2]) < 1:
                raise UserInputError("detect expects BGR uint8 images shaped (H, W, 3)")
        if len(images) == 1:
            canvases, boxes = zip(letterbox(images[0], self.input_size, upscale=self.upscale))
        else:
            side = max(
                -(-round(max(im.shape[:2]) * (self.input_size / max(im.shape[:2]))) // 32) * 32 for im in images
            )
            canvases, boxes = zip(*(letterbox(im, (side, side), upscale=self.upscale) for im in images))
        x = to_tensor(list(canvases))
        pred = decode(self.model(x), self.anchors).numpy()
        results = []
        for p, lb, im in zip(pred, boxes, images):
            kept = postprocess(p, self.conf_threshold, self.iou_threshold, self.max_detections)
            h, w = im.shape[:2]
            faces = []
            for row in kept:
                x1, y1, x2, y2 = lb.to_image(row[:4])
                x1, x2 = np.clip([x1, x2], 0, w)
                y1, y2 = np.clip([y1, y2], 0, h)
                if x2 - x1 < 1 or y2 - y1 < 1:  # a box in the letterbox padding
                    continue
                lm = None
                if len(row) > 5:
                    lm = lb.to_image(row[5:].reshape(-1, 2).reshape(1, -1)).reshape(-1, 2)
                faces.append(
                    FaceBox(
                        float(x1),
                        float(y1),
                        float(x2),
                        float(y2),
                        float(row[4]),
                        lm,
                    )
                )
            results.append(faces)
        return results


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


def load_detector(path: str | Path, **overrides) -> YoloDetector:
    """A trained detector from its weights + card; ``overrides`` replace card values (e.g. ``conf_threshold``)."""
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
        "conf_threshold": card.get("conf_threshold", 0.3),
        "iou_threshold": card.get("iou_threshold", 0.4),
    }
    opts.update({k: v for k, v in overrides.items() if v is not None})
    return YoloDetector(model, np.asarray(card["anchors"], np.float32), card=card, **opts)
