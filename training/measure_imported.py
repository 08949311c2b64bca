"""Measure an imported embedder on LFW the way a gallery sees it, and derive its unknown threshold.

    python -m training.measure_imported --out runs/dlib-lfw.json            # dlib-resnet + mtcnn

Every photo of LFW View-2 folds 1-5 goes through the detector and the model's own chip (as `iznet evaluate`
and a gallery do), once. Then:
- verification on folds 1-5 (10-fold protocol: the threshold for each fold chosen on the other folds), and on
  fold 5 alone, whose people nobody here trains on;
- the unknown threshold: cosine similarity at FAR 1e-3 on folds 1-4 only (never fold 5), with the TAR it
  gives there and what it gives on fold 5. These are the numbers in the model card (iznet/registry.py).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


class _WithoutLandmarks:
    """A detector's boxes without its landmarks (so the chip comes from dlib's shape predictor)."""

    def __init__(self, det):
        self.det, self.name, self.version = det, det.name, {**det.version, "name": det.name + "+shape-predictor"}

    def detect(self, image):
        from dataclasses import replace

        return [replace(f, landmarks=None) for f in self.det.detect(image)]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="dlib-resnet")
    ap.add_argument("--detector", default="mtcnn")
    ap.add_argument("--lfw", type=Path, default=None, help="LFW folder [shared data]")
    ap.add_argument("--far", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--landmarks", choices=["detector", "shape-predictor"], default="detector",
                    help="Cut the chip from the detector's own landmarks, or from dlib's 5-point predictor in its box.")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)

    import torch

    from iznet.config import shared_data_dir
    from iznet.evaluation.photos import photo_chips
    from iznet.evaluation.verification import pair_distances, verification_report
    from iznet.gallery.calibrate import threshold_at_far
    from iznet.registry import create_detector, create_embedder, detector_threads
    from training.data import load_pairs

    torch.set_num_threads(args.threads)
    lfw = args.lfw or shared_data_dir() / "lfw"
    pairs = load_pairs(lfw / "pairs_folds1-5.txt")
    emb = create_embedder(args.model, threads=args.threads)
    det = create_detector(args.detector, **detector_threads(args.detector, args.threads))
    if args.landmarks == "shape-predictor":
        det = _WithoutLandmarks(det)
    uniq = sorted(set(pairs.left) | set(pairs.right))
    t0 = time.perf_counter()
    chips, report = photo_chips([lfw / u for u in uniq], emb.chip, det, progress=True)
    vec = emb.embed(chips)
    seconds = time.perf_counter() - t0
    pos = {u: i for i, u in enumerate(uniq)}
    a, b = vec[[pos[x] for x in pairs.left]], vec[[pos[x] for x in pairs.right]]
    dist = pair_distances(a, b)
    sim = (a * b).sum(1)
    out = {"model": emb.version, "detector": det.version, "chip": str(emb.chip), "photos": report.to_json(),
           "seconds": round(seconds, 1), "threads": args.threads}
    for name, sel in (("folds_1_5", [1, 2, 3, 4, 5]), ("folds_1_4", [1, 2, 3, 4]), ("fold_5", [5])):
        m = np.isin(pairs.fold, sel)
        folds = pairs.fold[m] if len(sel) > 1 else 10
        rep = verification_report(dist[m], pairs.same[m], folds, args.far)
        rep.pop("roc", None)
        out[name] = rep
    train = np.isin(pairs.fold, [1, 2, 3, 4])
    cal = threshold_at_far(sim[train & pairs.same], sim[train & ~pairs.same], args.far)
    test = pairs.fold == 5
    cal["fold_5"] = {"tar": float(np.mean(sim[test & pairs.same] >= cal["value"])),
                     "far": float(np.mean(sim[test & ~pairs.same] >= cal["value"]))}
    cal["source"] = f"model card: LFW View-2 folds 1-4 ({int(train.sum())} pairs) through {det.version['name']}"
    out["calibration"] = cal
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2, default=float) + "\n")
    print(json.dumps({k: out[k] for k in ("calibration", "photos", "seconds")}, indent=2, default=float))
    for name in ("folds_1_5", "folds_1_4", "fold_5"):
        r = out[name]
        print(f"{name}: accuracy {r['accuracy']:.4f} +- {r['accuracy_std']:.4f}, AUC {r['auc']:.4f}, "
              f"TAR@FAR={args.far:g} {r['tar_at_far']:.4f}")
    return out


if __name__ == "__main__":
    main()
