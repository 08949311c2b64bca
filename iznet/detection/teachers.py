"""Pretrained teacher detectors: OpenCV's Haar cascade and the Ultra-Light-Fast-Generic ONNX models.

They label photos that have no boxes (pseudo-labels for training) and are the baselines the trained
detector is measured against. Build them through :func:`iznet.registry.create_detector` (``haar``,
``ultralight-320``, ``ultralight-640``, an ``.onnx`` path), which also gives them their ``version``.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from iznet.config import shared_data_dir
from iznet.detection.boxes import nms
from iznet.detection.types import FaceBox
from iznet.errors import NotFoundError

TEACHERS = ("haar", "ultralight-320", "ultralight-640")


def _downscale(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """Shrink so the longer side is at most ``max_side``; returns the image and the factor to map back."""
    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale < 1.0:
        image = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return image, 1.0 / scale


class HaarTeacher:
    """OpenCV's frontal-face Haar cascade (Viola-Jones).

    The score is the number of overlapping raw detections merged into the box (more is surer); it is not a
    probability. (``detectMultiScale3``'s level weights would cost early rejection and run slower.)
    """

    name = "haar"

    def __init__(self, scale_factor: float = 1.1, min_neighbors: int = 5, min_size: int = 24, max_side: int = 1280):
        path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
        self.cascade = cv2.CascadeClassifier(str(path))
        if self.cascade.empty():
            raise NotFoundError(f"Haar cascade not found at {path} (is opencv-python-headless<5 installed?)")
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_size = min_size
        self.max_side = max_side

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        small, back = _downscale(image, self.max_side)
        gray = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY))
        rects, neighbours = self.cascade.detectMultiScale2(
            gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors, minSize=(self.min_size, self.min_size)
        )
        faces = [
            FaceBox(float(x), float(y), float(x + w), float(y + h), float(n)).scaled(back)
            for (x, y, w, h), n in zip(np.asarray(rects).reshape(-1, 4), np.asarray(neighbours).reshape(-1))
        ]
        return sorted(faces, key=lambda f: -f.score)


class UltraLightTeacher:
    """Ultra-Light-Fast-Generic face detector (RFB, 320x240 or 640x480 input) through onnxruntime.

    The graph already decodes its priors: ``boxes`` are normalised corners, ``scores[..., 1]`` the face
    probability. We resize the whole photo to the network's input (as the model was trained), threshold,
    and run NMS.
    """

    def __init__(
        self,
        model_path: str | Path,
        score_threshold: float = 0.7,
        iou_threshold: float = 0.3,
        threads: int = 0,
        max_candidates: int = 1000,
    ):
        import onnxruntime as ort

        model_path = Path(model_path)
        if not model_path.is_file():
            raise NotFoundError(f"teacher model {model_path} not found")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # the graph lists its weights as inputs; ORT warns once per weight
        if threads > 0:  # 0 = onnxruntime's default (one per core); the shared machine wants 1
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        shape = self.session.get_inputs()[0].shape  # [1, 3, H, W]
        self.input_name = self.session.get_inputs()[0].name
        self.input_hw = (int(shape[2]), int(shape[3]))
        self.name = f"ultralight-{self.input_hw[1]}"
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self.max_candidates = max_candidates

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        h, w = image.shape[:2]
        ih, iw = self.input_hw
        x = cv2.resize(image, (iw, ih))[:, :, ::-1].astype(np.float32)
        x = ((x - 127.0) / 128.0).transpose(2, 0, 1)[None]
        scores, boxes = self.session.run(None, {self.input_name: np.ascontiguousarray(x)})
        scores, boxes = scores[0, :, 1], boxes[0]
        mask = scores > self.score_threshold
        scores, boxes = scores[mask], boxes[mask]
        if len(scores) > self.max_candidates:  # a low threshold passes thousands of priors; NMS is quadratic
            top = np.argsort(-scores)[: self.max_candidates]
            scores, boxes = scores[top], boxes[top]
        boxes = boxes * np.array([w, h, w, h], dtype=np.float32)
        boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, w)
        boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, h)
        keep = nms(boxes, scores, self.iou_threshold)
        return [FaceBox(*map(float, boxes[i]), float(scores[i])) for i in keep]


def ultralight_path(size: int) -> Path:
    return shared_data_dir() / "models" / "ultra_light" / f"version-RFB-{size}.onnx"
