"""The study's grid on aligned chips: NN1, NN2 and Inception-v3, each trained with triplets (semi-hard) and
with pairs, plus a CosFace run, the same fixed time budget per run, then one table.

    python -m training.chips --out runs/lfw-dlib-chips                # once: MTCNN-aligned dlib chips of LFW
    taskset -c 0 python -m training.grid --chips runs/lfw-dlib-chips --out runs/grid --minutes 8

Every run trains on LFW people outside fold 5 (dev pairs: fold 4) with the same budget, reduced input size
and width (CPU: ``--input-size 96 --width 0.25``; the published sizes need a GPU), then is judged on fold 5
(people it never saw): 10-fold verification accuracy, AUC, TAR@FAR=1e-3 on the chips of the fold-5 pairs
(the crops a gallery would cut from the raw photos, MTCNN + dlib's chip), and the study's analysis report
(t-SNE, distance boxplots, medoid table, warnings, nearest-medoid accuracy: the accuracy metric the study
wished for) on the 12 fold-5 people with the most photos. Writes ``OUT/grid.json`` and ``OUT/grid.md``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

#: (network, method, extra config): the study's six, the one it skipped included, and CosFace
GRID = [("nn1", "triplet", {}), ("nn1", "pair", {}), ("nn2", "triplet", {}), ("nn2", "pair", {}),
        ("inception_v3", "triplet", {}), ("inception_v3", "pair", {}),
        ("nn2", "softmax", {"margin_kind": "cosface", "margin": 0.35, "scale": 30.0})]


def fold5_report(run: Path, chips: Path, pairs_file: str) -> dict:
    import torch

    from iznet.embedding.embedder import load_embedder
    from iznet.evaluation.verification import pair_distances, verification_report
    from training.data import load_pair_images, load_pairs
    from training.trainer import embed_array

    emb = load_embedder(run)
    pairs = load_pairs(pairs_file).select({5})
    left, right = load_pair_images(chips, pairs, emb.preprocess.crop_fraction, emb.input_size)
    with torch.inference_mode():
        a = embed_array(emb.model, left, emb.preprocess, emb.flip_tta)
        b = embed_array(emb.model, right, emb.preprocess, emb.flip_tta)
    rep = verification_report(pair_distances(a, b), pairs.same, 10)
    rep.pop("roc", None)
    return {k: rep[k] for k in ("accuracy", "accuracy_std", "auc", "tar_at_far")}


def fold5_people(chips: Path, pairs_file: str, n: int = 12) -> list[str]:
    from training.data import load_pairs

    people = load_pairs(pairs_file).people({5})
    counts = {p: len(list((chips / p).glob("*.png"))) for p in people if (chips / p).is_dir()}
    return [p for p, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chips", type=Path, required=True, help="training.chips output (face folder + teacher.npz)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--minutes", type=float, default=8.0, help="time budget per run")
    ap.add_argument("--input-size", type=int, default=96)
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--crop-fraction", type=float, default=0.7, help="centre of the 150-px chip kept (the face)")
    ap.add_argument("--only", default="", help="comma-separated network-method names to run")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    from iznet.config import shared_data_dir
    from training.analysis import make_report
    from training.trainer import TrainConfig, Trainer

    pairs = str(shared_data_dir() / "lfw" / "pairs_folds1-5.txt")
    names = fold5_people(args.chips, pairs)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for network, method, extra in GRID:
        tag = f"{network}-{'cosface' if method == 'softmax' else method}"
        if args.only and tag not in args.only.split(","):
            continue
        run = args.out / tag
        cfg = TrainConfig(data=str(args.chips), out=str(run), network=network, method=method,
                          input_size=args.input_size, width=args.width, crop_fraction=args.crop_fraction,
                          chip="dlib:150:0.25", pairs=pairs, exclude_folds=[5], dev_folds=[4], split="all",
                          optimizer="adam", lr=1e-3 if method != "softmax" else 2e-3, weight_decay=1e-4,
                          batch_size=32, warmup_steps=100, steps=1_000_000, max_minutes=args.minutes,
                          eval_every=400, threads=args.threads, progress=False, **extra)
        t0 = time.time()
        summary = Trainer(cfg).fit()
        fold5 = fold5_report(run, args.chips, pairs)
        result, index = make_report(run / "analysis", model=run, data=args.chips, names=names, max_per_person=20,
                                    threads=args.threads, title=f"{tag}: 12 fold-5 people (never trained on)")
        row = {"run": tag, "network": network, "method": method, "input": args.input_size, "width": args.width,
               "minutes": args.minutes, "steps": summary["step"], "images_seen": summary["images_seen"],
               "fold_5": fold5, "dev_fold_4": {k: (summary.get("dev") or {}).get(k) for k in ("accuracy", "auc")},
               "nearest_medoid_accuracy": result.nearest_medoid_accuracy,
               "warnings": len(result.warnings), "report": str(index),
               "wall_s": round(time.time() - t0, 1)}
        rows.append(row)
        print(json.dumps(row), flush=True)
        (args.out / "grid.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = ["| run | steps | images | fold-5 accuracy | AUC | TAR@1e-3 | nearest-medoid acc. | warnings |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        f = r["fold_5"]
        nm = r["nearest_medoid_accuracy"]
        lines.append(f"| {r['run']} | {r['steps']:,} | {r['images_seen']:,} | {f['accuracy']:.3f} ± "
                     f"{f['accuracy_std']:.3f} | {f['auc']:.3f} | {f['tar_at_far']:.3f} | "
                     f"{'' if nm is None else f'{nm:.3f}'} | {r['warnings']} |")
    (args.out / "grid.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return {"rows": rows}


if __name__ == "__main__":
    main()
