"""Landmark error on the CMU+MIT landmark file: each detector's five points against the hand-marked ones.

    python -m training.detection.landmark_error --detector mtcnn --detector runs/detection/yolo.pt

The file marks six points per face (eyes, nose, left mouth corner, mouth centre, right mouth corner); the
five MTCNN-style points are compared with the eyes, the nose and the two corners. For each marked face the
detection whose box holds the marked nose, nearest it, is taken; its error is the mean distance of the five
points over the marked inter-ocular distance (NME). Reported: the mean and median NME over the faces found,
how many marked faces had a detection with landmarks, and the share with NME above 0.1 (failures).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

#: the file's six points -> the five in MTCNN's order (left eye, right eye, nose, left and right mouth corner)
FIVE = [0, 1, 2, 3, 5]


def load_marks(path: Path) -> dict[str, list[np.ndarray]]:
    marks: dict[str, list[np.ndarray]] = defaultdict(list)
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 13:
            marks[parts[0]].append(np.asarray(parts[1:], np.float32).reshape(6, 2)[FIVE])
    return marks


def nme(detector, root: Path, marks: dict[str, list[np.ndarray]]) -> dict:
    from iznet.imageio import read_image

    errors, found, total = [], 0, 0
    for name, faces in sorted(marks.items()):
        dets = [d for d in detector.detect(read_image(root / "images" / name)) if d.landmarks is not None]
        for g in faces:
            total += 1
            nose = g[2]
            inside = [d for d in dets if d.x1 <= nose[0] <= d.x2 and d.y1 <= nose[1] <= d.y2]
            if not inside:
                continue
            d = min(inside, key=lambda d: np.hypot((d.x1 + d.x2) / 2 - nose[0], (d.y1 + d.y2) / 2 - nose[1]))
            iod = float(np.linalg.norm(g[0] - g[1]))
            errors.append(float(np.linalg.norm(np.asarray(d.landmarks) - g, axis=1).mean() / max(iod, 1e-6)))
            found += 1
    e = np.asarray(errors)
    return {"faces_marked": total, "faces_with_landmarks": found,
            "nme_mean": round(float(e.mean()), 4) if len(e) else None,
            "nme_median": round(float(np.median(e)), 4) if len(e) else None,
            "failure_rate_nme_0.1": round(float((e > 0.1).mean()), 4) if len(e) else None}


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--detector", action="append", required=True, help="any detector spec; repeatable")
    ap.add_argument("--data", type=Path, default=None, help="the CMU+MIT folder [shared data]")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    import torch

    from iznet.config import shared_data_dir
    from iznet.registry import create_detector, detector_threads

    torch.set_num_threads(1)
    root = args.data or shared_data_dir() / "detection" / "cmu_mit_frontal"
    marks = load_marks(root / "ground_truth_landmarks.txt")
    rows = []
    for spec in args.detector:
        det = create_detector(spec, **detector_threads(spec, 1))
        rows.append({"detector": spec, **nme(det, root, marks)})
        print(json.dumps(rows[-1]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
