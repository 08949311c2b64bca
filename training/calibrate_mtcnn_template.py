"""Calibrate ``DLIB_CHIP_TEMPLATE_150``: where MTCNN's five landmarks sit in dlib's 150x150 face chip.

dlib's ResNet face descriptor was trained on chips cut by ``dlib.get_face_chip(img, shape, 150, 0.25)`` from
its 5-point shape predictor (eye corners, nose base) on its HOG detector's boxes. To give that network the
same framing from MTCNN's five points (eye centres, nose tip, mouth corners), we need those points in the
chip's pixel coordinates. This script measures them:

1. People of LFW who appear nowhere in View-2 fold 5 (the fifth block of 600 lines of
   ``lfw/pairs_folds1-5.txt``), so fold 5 stays a clean held-out set; one photo each (``_0001``), in a
   shuffled order (``--seed``), until ``--n`` faces were found by both detectors.
2. On each photo: dlib's HOG detector (the face nearest the centre, as LFW centres its subject) and the
   5-point shape predictor; ``dlib.get_face_chip_details(shape, 150, 0.25)`` gives the chip (a rectangle and
   an angle), from which :func:`dlib_chip_matrix` builds the 2x3 image->chip matrix exactly as dlib's
   ``extract_image_chip`` samples (chip pixel (0, 0), (cols-1, 0), (0, rows-1) <- the rotated rectangle's
   corners). The matrix is checked against dlib's own chip on the first photos (``--check``).
3. MTCNN on the same photo (the face overlapping dlib's box); its landmarks through that matrix.

The template is the mean over the faces; the spread (standard deviation per point) is printed with it.

4. The weights of the least-squares similarity fit onto the template (``DLIB_CHIP_WEIGHTS``): MTCNN's eyes
   are its surest points and dlib's chip is set mostly by eye corners, so the eyes weigh 1 and a small grid
   of nose and mouth weights is tried on the same faces; the one whose chips' corners land nearest dlib's
   chip corners (mean distance, chip pixels) is printed, with the plain (all 1) fit for comparison. The
   held-out check (fold 5) is ``tests/detection/test_mtcnn.py``.

    PYTHONPATH=. python -m training.calibrate_mtcnn_template [--n 300] [--seed 0] [--json out.json]

Needs the shared data (``lfw/``), ``dlib`` (calibration only; the product never imports it) and the imported
``dlib-shape-5`` and MTCNN weights. One thread; about a minute on one core.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

CHIP_SIZE, CHIP_PADDING = 150, 0.25


def fold_names(pairs_file: Path, fold: int = 5) -> set[str]:
    """Every name in fold ``fold`` of an LFW View-2 pairs file (``k<TAB>n`` header, then 2n lines per fold)."""
    lines = pairs_file.read_text().splitlines()
    k, n = (int(v) for v in lines[0].split())
    if not 1 <= fold <= k:
        raise ValueError(f"{pairs_file} has {k} folds, not {fold}")
    names = set()
    for line in lines[1 + (fold - 1) * 2 * n: 1 + fold * 2 * n]:
        parts = line.split("\t")
        names.add(parts[0])
        if len(parts) == 4:
            names.add(parts[2])
    return names


def dlib_chip_matrix(details) -> np.ndarray:
    """The 2x3 matrix that maps image pixels onto the pixels of the chip ``details`` describes.

    dlib's ``extract_image_chip`` maps chip pixels (0, 0), (cols-1, 0), (0, rows-1) to the corners tl, tr, bl
    of ``details.rect`` rotated by ``details.angle`` about its centre (then samples bilinearly). Pixel centres
    are at integer coordinates on both sides.
    """
    r = details.rect
    cx, cy = (r.left() + r.right()) / 2, (r.top() + r.bottom()) / 2
    c, s = np.cos(details.angle), np.sin(details.angle)

    def rot(x: float, y: float) -> list[float]:
        dx, dy = x - cx, y - cy
        return [cx + c * dx - s * dy, cy + s * dx + c * dy]

    src = np.float32([rot(r.left(), r.top()), rot(r.right(), r.top()), rot(r.left(), r.bottom())])
    dst = np.float32([[0, 0], [details.cols - 1, 0], [0, details.rows - 1]])
    return cv2.getAffineTransform(src, dst).astype(np.float64)


def apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    pts = np.asarray(pts, np.float64).reshape(-1, 2)
    return pts @ m[:, :2].T + m[:, 2]


class DlibReference:
    """dlib's HOG detector + 5-point shape predictor + chip geometry, for the photo's most central face."""

    def __init__(self) -> None:
        import dlib

        from iznet.imported import imported_file

        self.dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(imported_file("dlib-shape-5")))

    def face(self, image_bgr: np.ndarray, upsample: int = 0):
        """(rect as x1 y1 x2 y2, shape, 2x3 image->chip matrix) of the face nearest the centre, or None."""
        rgb = np.ascontiguousarray(image_bgr[:, :, ::-1])
        rects = self.detector(rgb, upsample)
        if len(rects) == 0:
            return None
        h, w = rgb.shape[:2]
        rect = min(rects, key=lambda r: (r.center().x - w / 2) ** 2 + (r.center().y - h / 2) ** 2)
        shape = self.predictor(rgb, rect)
        details = self.dlib.get_face_chip_details(shape, CHIP_SIZE, CHIP_PADDING)
        box = np.float32([rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1])
        return box, shape, dlib_chip_matrix(details)

    def chip(self, image_bgr: np.ndarray, shape) -> np.ndarray:
        """dlib's own chip (BGR) for ``shape``."""
        rgb = np.ascontiguousarray(image_bgr[:, :, ::-1])
        return np.ascontiguousarray(self.dlib.get_face_chip(rgb, shape, CHIP_SIZE, CHIP_PADDING)[:, :, ::-1])


def match_mtcnn(faces, box: np.ndarray):
    """The MTCNN face that overlaps dlib's box most (IoU >= 0.3), or None."""
    from iznet.detection.boxes import iou_matrix

    if not faces:
        return None
    ious = iou_matrix(np.float32([[f.x1, f.y1, f.x2, f.y2] for f in faces]), box[None])[:, 0]
    best = int(np.argmax(ious))
    return faces[best] if ious[best] >= 0.3 else None


def chip_check(ref: DlibReference, image: np.ndarray, shape, m: np.ndarray) -> dict:
    """How well ``m`` reproduces dlib's chip: mean absolute pixel difference of cv2.warpAffine(image, m)
    against dlib's chip, and the same with ``m`` shifted by half a pixel (should be worse)."""
    ours = lambda mm: cv2.warpAffine(image, mm, (CHIP_SIZE, CHIP_SIZE), flags=cv2.INTER_LINEAR).astype(np.float32)
    theirs = ref.chip(image, shape).astype(np.float32)
    inner = (slice(10, -10), slice(10, -10))
    shifted = m.copy()
    shifted[:, 2] += 0.5
    return {"mad": float(np.abs(ours(m) - theirs)[inner].mean()),
            "mad_shifted_half_px": float(np.abs(ours(shifted) - theirs)[inner].mean())}


def calibrate(shared: Path, n: int = 300, seed: int = 0, check: int = 5, progress: bool = True) -> dict:
    from iznet.detection.mtcnn import MTCNN
    from iznet.imageio import read_image

    lfw = shared / "lfw"
    held_out = fold_names(lfw / "pairs_folds1-5.txt", 5)
    people = sorted(p.name for p in lfw.iterdir() if p.is_dir() and p.name not in held_out)
    order = np.random.default_rng(seed).permutation(len(people))
    ref, det = DlibReference(), MTCNN()
    points, residuals, checks, used, missed = [], [], [], [], 0
    dlib_template = None
    for k in order:
        if len(points) >= n:
            break
        photo = lfw / people[k] / f"{people[k]}_0001.jpg"
        if not photo.is_file():
            continue
        image = read_image(photo)
        found = ref.face(image)
        face = None if found is None else match_mtcnn(det.detect(image), found[0])
        if face is None:
            missed += 1
            continue
        box, shape, m = found
        points.append(apply(m, face.landmarks))
        parts = np.float64([[shape.part(i).x, shape.part(i).y] for i in range(shape.num_parts)])
        if dlib_template is None:
            dlib_template = _dlib_5point_template()
        residuals.append(np.linalg.norm(apply(m, parts) - dlib_template, axis=1))
        if len(checks) < check:
            checks.append(chip_check(ref, image, shape, m))
        used.append(photo.relative_to(shared).as_posix())
        if progress and len(points) % 50 == 0:
            print(f"  {len(points)} faces", file=sys.stderr, flush=True)
    pts = np.stack(points)
    template = pts.mean(0)
    grid = [(1.0, 1.0, nose, mouth, mouth) for nose in (0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0)
            for mouth in (0, 0.05, 0.1, 0.25, 0.5, 1.0)]
    corner_error = {w: float(chip_corner_error(pts, template, w).mean()) for w in grid}
    best = min(corner_error, key=corner_error.get)
    return {
        "template": template.round(2).tolist(),
        "std": pts.std(0).round(2).tolist(),
        "median": np.median(pts, 0).round(2).tolist(),
        "faces": len(points),
        "photos_without_a_matched_face": missed,
        "dlib_parts_residual_px": {"mean": round(float(np.mean(residuals)), 3),
                                   "max": round(float(np.max(residuals)), 3)},
        "chip_check": checks,
        "weights": list(best),
        "corner_error_px": {"weighted": round(corner_error[best], 3),
                            "plain": round(float(chip_corner_error(pts, template, (1,) * 5).mean()), 3)},
        "seed": seed,
        "photos": used,
        "points": pts.round(3).tolist(),  # per face, MTCNN's points in dlib's chip
    }


def chip_corner_error(points: np.ndarray, template: np.ndarray, weights) -> np.ndarray:
    """(faces, 4): for MTCNN's ``points`` already in dlib's chip, how far the corners of the chip made by the
    weighted similarity fit onto ``template`` land from dlib's chip corners (which are the chip's own)."""
    from iznet.detection.mtcnn import similarity_transform

    corners = np.float64([[0, 0], [CHIP_SIZE - 1, 0], [0, CHIP_SIZE - 1], [CHIP_SIZE - 1, CHIP_SIZE - 1]])
    out = []
    for p in points:
        inv = cv2.invertAffineTransform(similarity_transform(p, template, weights))
        out.append(np.linalg.norm(apply(inv, corners) - corners, axis=1))
    return np.asarray(out)


def _dlib_5point_template() -> np.ndarray:
    """dlib's 5-point chip template (its ``get_face_chip_details``), in chip pixels of our matrix.

    dlib fits its similarity to ``(padding + p) / (1 + 2 padding) * size``; the chip's pixel grid spans
    ``size - 1`` over the same rectangle, so in chip pixels the points are ``(...) * (size - 1)``. Mapping the
    shape predictor's parts through :func:`dlib_chip_matrix` should land near these (the fit's residual).
    """
    p = np.float64([[0.8595674595992, 0.2134981538014], [0.6460604764104, 0.2289674387677],
                    [0.1205750620789, 0.2137274526848], [0.3340850613712, 0.2290642403242],
                    [0.4901123135679, 0.6277975316475]])
    return (CHIP_PADDING + p) / (1 + 2 * CHIP_PADDING) * (CHIP_SIZE - 1)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=300, help="Faces to average over.")
    ap.add_argument("--seed", type=int, default=0, help="Order in which the LFW people are tried.")
    ap.add_argument("--check", type=int, default=5, help="Photos on which to compare our chip matrix with dlib's chip.")
    ap.add_argument("--json", type=Path, default=None, help="Write the result (and the photos used) here.")
    args = ap.parse_args(argv)

    import torch

    from iznet.config import shared_data_dir

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    shared = shared_data_dir()
    if not (shared / "lfw" / "pairs_folds1-5.txt").is_file():
        sys.exit(f"needs the shared LFW photos at {shared / 'lfw'}")
    res = calibrate(shared, args.n, args.seed, args.check)
    print(f"{res['faces']} faces ({res['photos_without_a_matched_face']} photos skipped: no face from both)")
    print(f"dlib's parts through our chip matrix vs dlib's template: {res['dlib_parts_residual_px']} px")
    print("our matrix vs dlib's chip (mean abs. difference, 0-255):",
          [(round(c['mad'], 2), round(c['mad_shifted_half_px'], 2)) for c in res["chip_check"]])
    names = ["left eye", "right eye", "nose", "left mouth", "right mouth"]
    print("DLIB_CHIP_TEMPLATE_150 = np.array([")
    for name, (x, y), (sx, sy) in zip(names, res["template"], res["std"]):
        print(f"    [{x:.2f}, {y:.2f}],  # {name}: sd {sx:.2f} / {sy:.2f}")
    print("], dtype=np.float32)")
    print(f"DLIB_CHIP_WEIGHTS = {tuple(res['weights'])}  # mean chip-corner error {res['corner_error_px']} px")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    return res


if __name__ == "__main__":
    main()
