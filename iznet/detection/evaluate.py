"""Detection benchmarks and VOC-style average precision.

* :func:`average_precision`: all detections of a dataset ranked by score, each matched greedily to the
  unmatched ground-truth box of highest IoU (>= the threshold) in its image; AP is the area under the
  precision-recall curve with precision made monotone (VOC 2010+ "all points" interpolation).
* Loaders for the shared benchmark sets: CMU+MIT frontal (head boxes or inner-face boxes) and the dlib
  PASCAL faces (imglab XML).
* :func:`benchmark`: run several detectors on the same images in one run, with AP and milliseconds per image.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from iznet.detection.boxes import iou_matrix
from iznet.detection.types import Detector
from iznet.errors import NotFoundError, UserInputError
from iznet.imageio import read_image


@dataclass
class BoxDataset:
    """A benchmark: image paths and the ground-truth boxes (N, 4) of each."""

    name: str
    images: list[Path]
    boxes: list[np.ndarray]

    @property
    def num_faces(self) -> int:
        return int(sum(len(b) for b in self.boxes))


def load_box_file(images_dir: Path, box_file: Path, name: str) -> BoxDataset:
    """``image x1 y1 x2 y2`` per line (the CMU+MIT files), plus every other image of ``images_dir`` (no faces)."""
    if not box_file.is_file():
        raise NotFoundError(f"box file {box_file} not found")
    per_image: dict[str, list[list[float]]] = {}
    for n, line in enumerate(box_file.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 5:
            raise UserInputError(f"{box_file}:{n}: expected 'image x1 y1 x2 y2', got {line!r}")
        per_image.setdefault(parts[0], []).append([float(v) for v in parts[1:]])
    # Every image of the folder is in the set: one without a line has no face (its detections are false
    # positives), as in the CMU+MIT test set, where a few scenes have none.
    from iznet.imageio import is_image_file

    names = sorted(set(per_image) | {p.name for p in images_dir.iterdir() if is_image_file(p)})
    return BoxDataset(
        name,
        [images_dir / k for k in names],
        [np.asarray(per_image.get(k, []), np.float32).reshape(-1, 4) for k in names],
    )


def load_cmu_mit(root: Path, boxes: str = "head") -> BoxDataset:
    """The CMU+MIT frontal half: ``boxes="head"`` (ground_truth_bboxes.txt) or ``"face"`` (the inner-face file)."""
    files = {"head": "ground_truth_bboxes.txt", "face": "ground_truth_bboxes_face_only.txt"}
    if boxes not in files:
        raise UserInputError(f"boxes must be one of {', '.join(files)}")
    return load_box_file(root / "images", root / files[boxes], f"cmu_mit/{boxes}")


def load_imglab_xml(xml_path: Path, name: str | None = None) -> BoxDataset:
    """dlib imglab XML: ``<image file=...><box top left width height/>``; boxes marked ``ignore`` are dropped."""
    if not xml_path.is_file():
        raise NotFoundError(f"imglab file {xml_path} not found")
    root = ET.parse(xml_path).getroot()
    images, boxes = [], []
    for im in root.iter("image"):
        bs = []
        for b in im.iter("box"):
            if b.get("ignore") in ("1", "true"):
                continue
            t, l, w, h = (float(b.get(k)) for k in ("top", "left", "width", "height"))
            bs.append([l, t, l + w, t + h])
        images.append(xml_path.parent / im.get("file"))
        boxes.append(np.asarray(bs, np.float32).reshape(-1, 4))
    return BoxDataset(name or xml_path.stem, images, boxes)


def match_detections(
    det_boxes: np.ndarray, det_scores: np.ndarray, gt_boxes: np.ndarray, iou_threshold: float
) -> np.ndarray:
    """For one image: True per detection that is a true positive (greedy in score order, each GT once)."""
    det_boxes = np.asarray(det_boxes, np.float32).reshape(-1, 4)
    order = np.argsort(-np.asarray(det_scores, np.float32).reshape(-1), kind="stable")
    tp = np.zeros(len(det_boxes), dtype=bool)
    if len(gt_boxes) == 0 or len(det_boxes) == 0:
        return tp
    ious = iou_matrix(det_boxes, gt_boxes)
    taken = np.zeros(len(gt_boxes), dtype=bool)
    for i in order:
        cand = np.where(~taken, ious[i], -1.0)
        j = int(np.argmax(cand))
        if cand[j] >= iou_threshold:
            taken[j] = True
            tp[i] = True
    return tp


def average_precision(
    detections: list[tuple[np.ndarray, np.ndarray]], gts: list[np.ndarray], iou_threshold: float = 0.5
) -> float:
    """VOC AP over a dataset. ``detections[i] = (boxes (N, 4), scores (N,))`` for image ``i``."""
    n_gt = int(sum(len(g) for g in gts))
    if n_gt == 0:
        raise UserInputError("average precision needs at least one ground-truth box")
    scores, tps = [], []
    for (boxes, s), g in zip(detections, gts):
        scores.append(np.asarray(s, np.float32).reshape(-1))
        tps.append(match_detections(boxes, s, np.asarray(g, np.float32).reshape(-1, 4), iou_threshold))
    if not scores or sum(len(s) for s in scores) == 0:
        return 0.0
    s, tp = np.concatenate(scores), np.concatenate(tps)
    order = np.argsort(-s, kind="stable")
    tp = tp[order].astype(np.float64)
    ctp, cfp = np.cumsum(tp), np.cumsum(1 - tp)
    recall = ctp / n_gt
    precision = ctp / np.maximum(ctp + cfp, 1e-12)
    mrec = np.concatenate([[0.0], recall, [recall[-1]]])
    mpre = np.concatenate([[1.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    idx = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))


@dataclass
class DetectorResult:
    detector: str
    dataset: str
    ap50: float
    ap30: float
    recall50: float
    ms_per_image: float
    num_images: int
    num_faces: int
    extra: dict = field(default_factory=dict)


def run_detector(detector: Detector, images: list[np.ndarray], desc: str = "") -> tuple[list, float]:
    """Detections per image and the mean milliseconds per image (wall clock, one image at a time)."""
    dets = []
    detector.detect(images[0])  # warm-up (lazy init, allocator) outside the clock
    t0 = time.perf_counter()
    for im in tqdm(images, desc=desc, unit="img", leave=False):
        faces = detector.detect(im)
        boxes = np.asarray([[f.x1, f.y1, f.x2, f.y2] for f in faces], np.float32).reshape(-1, 4)
        dets.append((boxes, np.asarray([f.score for f in faces], np.float32)))
    return dets, (time.perf_counter() - t0) * 1000 / len(images)


def score_dataset(dets: list, data: BoxDataset, detector_name: str, ms: float) -> DetectorResult:
    n_gt = data.num_faces
    tp50 = sum(int(match_detections(b, s, g, 0.5).sum()) for (b, s), g in zip(dets, data.boxes))
    return DetectorResult(
        detector=detector_name,
        dataset=data.name,
        ap50=average_precision(dets, data.boxes, 0.5),
        ap30=average_precision(dets, data.boxes, 0.3),
        recall50=tp50 / max(n_gt, 1),
        ms_per_image=ms,
        num_images=len(data.images),
        num_faces=n_gt,
    )


def time_on_size(detector: Detector, image: np.ndarray, size: tuple[int, int] = (640, 480), repeats: int = 10) -> float:
    """Milliseconds per image for one image resized to ``size`` (w, h): the speed column of the table."""
    import cv2

    im = cv2.resize(image, size)
    detector.detect(im)
    t0 = time.perf_counter()
    for _ in range(repeats):
        detector.detect(im)
    return (time.perf_counter() - t0) * 1000 / repeats


def benchmark(detectors: list[Detector], datasets: list[BoxDataset], progress: bool = True) -> list[DetectorResult]:
    """Every detector on every dataset, in one run. Each image is read and detected once per detector, even
    when several datasets share it (CMU+MIT with head boxes and with inner-face boxes); ``ms_per_image`` is
    the mean over those unique images. ``extra["ms_640x480"]`` times one image resized to 640x480."""
    paths = list(dict.fromkeys(p for d in datasets for p in d.images))
    images = [read_image(p) for p in paths]
    results = []
    for det in detectors:
        dets, ms = run_detector(det, images, desc=det.name if progress else "")
        by_path = dict(zip(paths, dets))
        ms640 = time_on_size(det, images[0])
        for data in datasets:
            r = score_dataset([by_path[p] for p in data.images], data, det.name, ms)
            r.extra["ms_640x480"] = ms640
            results.append(r)
    order = {d.name: i for i, d in enumerate(datasets)}
    return sorted(results, key=lambda r: order[r.dataset])


def format_table(results: list[DetectorResult]) -> str:
    head = f"| {'dataset':<16} | {'detector':<22} | AP@0.5 | AP@0.3 | recall@0.5 | ms/image | ms/640x480 |"
    lines = [head, "|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|"]
    for r in results:
        lines.append(
            f"| {r.dataset:<16} | {r.detector:<22} | {r.ap50:6.3f} | {r.ap30:6.3f} | {r.recall50:10.3f} | "
            f"{r.ms_per_image:8.1f} | {r.extra.get('ms_640x480', float('nan')):10.1f} |"
        )
    return "\n".join(lines)
