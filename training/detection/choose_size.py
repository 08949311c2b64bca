"""Choose a trained detector's inference size and score threshold on a held-out set, never on the test set.

    python -m training.detection.choose_size runs/detection/yolo.pt \\
        --labels runs/detection/pseudo_groups_mtcnn.json --root $IZNET_SHARED_DATA/groups --write

The held-out set is photos the detector was not trained on with a teacher's boxes (by default the group
photos with MTCNN's, score >= 0.9: the framing the detector learnt). At each candidate size: AP@0.5 and
AP@0.3 there, and ms per 640x480 on one thread. The chosen size has the best AP@0.5 (ties: the faster);
``--max-ms`` leaves out sizes slower than that. At the chosen size, the score threshold of the answers is the
one with the best F1 (IoU 0.5) on the same photos: below it, what the detector adds is mostly not faces.
``--write`` puts both into the card (``input_size``, ``conf_threshold``), with the tables as
``input_size_choice`` and ``conf_threshold_choice``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("detector", type=Path)
    ap.add_argument("--labels", type=Path, required=True)
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--sizes", default="256,320,416,512")
    ap.add_argument("--min-score", type=float, default=0.9)
    ap.add_argument("--max-ms", type=float, default=None)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    from iznet.detection.evaluate import BoxDataset, match_detections, run_detector, score_dataset, time_on_size
    from iznet.detection.yolo import load_detector
    from iznet.imageio import read_image
    from training.detection.pseudo_labels import load_labels

    torch.set_num_threads(1)
    labels = load_labels(args.labels)
    rels = sorted(labels)
    data = BoxDataset("held-out " + args.root.name, [args.root / r for r in rels],
                      [labels[r][labels[r][:, 4] >= args.min_score, :4] for r in rels])
    images = [read_image(p) for p in data.images]
    rows, dets_at = [], {}  # each size's detections: the threshold is then chosen on the chosen size's
    for size in [int(s) for s in args.sizes.split(",")]:
        det = load_detector(args.detector, input_size=size, conf_threshold=0.05)
        dets, _ = run_detector(det, images)
        dets_at[size] = dets
        r = score_dataset(dets, data, det.name, 0.0)
        ms = float(np.median([time_on_size(det, im) for im in images[:5]]))
        rows.append({"input_size": size, "ap50": round(r.ap50, 4), "ap30": round(r.ap30, 4), "ms_640x480": round(ms, 1)})
        print(rows[-1], flush=True)
    ok = [r for r in rows if args.max_ms is None or r["ms_640x480"] <= args.max_ms] or rows
    best = max(ok, key=lambda r: (r["ap50"], -r["ms_640x480"]))
    on = f"{data.name}: {len(images)} photos, {data.num_faces} faces ({args.labels.name}, score >= {args.min_score})"
    print(f"chosen input size {best['input_size']} on {on}")
    out = {"chosen": best["input_size"], "on": on, "table": rows}

    dets = dets_at[best["input_size"]]
    scores = np.concatenate([np.asarray(s, np.float32).reshape(-1) for _, s in dets])
    hits = np.concatenate([match_detections(b, s, g, 0.5) for (b, s), g in zip(dets, data.boxes)])
    f1_rows = []
    for t in np.round(np.arange(0.1, 0.951, 0.05), 2):
        kept = scores >= t
        tp = int(hits[kept].sum())
        prec, rec = tp / max(1, int(kept.sum())), tp / max(1, data.num_faces)
        f1_rows.append({"conf_threshold": float(t), "precision": round(prec, 4), "recall": round(rec, 4),
                        "f1": round(2 * prec * rec / max(1e-9, prec + rec), 4)})
    best_t = max(f1_rows, key=lambda r: (r["f1"], -r["conf_threshold"]))
    print(f"chosen score threshold {best_t['conf_threshold']} (F1 {best_t['f1']}, precision {best_t['precision']}, "
          f"recall {best_t['recall']})")
    out_t = {"chosen": best_t["conf_threshold"], "on": on, "iou": 0.5, "table": f1_rows}
    if args.write:
        card_path = args.detector.with_suffix(".json")
        card = json.loads(card_path.read_text())
        card["input_size"] = best["input_size"]
        card["input_size_choice"] = out
        card["conf_threshold"] = best_t["conf_threshold"]
        card["conf_threshold_choice"] = out_t
        card_path.write_text(json.dumps(card, indent=2) + "\n")
    return {"input_size": out, "conf_threshold": out_t}


if __name__ == "__main__":
    main()
