"""Does training run on this machine's GPU, and how fast? Each embedding network and the detector train a few
hundred steps on real faces; one line each: device, images/s, the loss at the start and at the end.

    bash bench/gpu_check.sh                          # every network, 300 steps each, on the GPU
    python -m bench.gpu_check --device cpu --steps 3 --networks small   # the same path on a CPU (a smoke test)

Embedders train with the margin softmax on LFW (the shared data; AT&T faces when LFW is absent) at their
published input sizes (``--small-inputs``: the reduced sizes a CPU uses), batch 64; the detector on the
PASCAL training boxes pasted into the non-face scenes. On CUDA the trainers use bf16 autocast. A network
whose loss does not fall, or a run that fails, is marked so, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

#: name -> (published input size, reduced input size, width on a CPU smoke run)
NETWORKS = {"small": (64, 64, 0.5), "hog_lbp": (64, 64, 1.0), "mobilefacenet": (112, 64, 0.5),
            "nn1": (220, 96, 0.125), "nn2": (224, 96, 0.125), "inception_v3": (299, 96, 0.125)}


def _trend(losses: list[float]) -> tuple[float, float]:
    """The mean loss of the first and of the last tenth of the steps."""
    k = max(1, len(losses) // 10)
    return sum(losses[:k]) / k, sum(losses[-k:]) / k


def _faces(shared: Path) -> tuple[Path, float]:
    if (shared / "lfw").is_dir():
        return shared / "lfw", 0.45  # raw LFW: the face is the centre 45%
    return shared / "att_orl", 1.0


def check_embedder(name: str, args, shared: Path, tmp: Path) -> dict:
    from training.trainer import TrainConfig, Trainer

    data, crop = _faces(shared)
    size, small, width = NETWORKS[name]
    cfg = TrainConfig(data=str(data), out=str(tmp / name), network=name, method="softmax", split="all",
                      input_size=small if args.small_inputs else size, crop_fraction=crop,
                      width=width if args.small_inputs else 1.0, batch_size=args.batch, steps=args.steps,
                      warmup_steps=max(1, args.steps // 10), lr=0.05, eval_every=0, min_images=2,
                      device=args.device, threads=args.threads, progress=False,
                      net_args={"cells": [8]} if name == "hog_lbp" and args.small_inputs else {})
    losses: list[float] = []
    trainer = Trainer(cfg, callbacks=[lambda t: t.step and losses.append(t.last_loss)])
    t0 = time.perf_counter()
    summary = trainer.fit()
    seconds = time.perf_counter() - t0
    start, end = _trend(losses)
    return {"network": name, "device": str(trainer.device), "input": cfg.input_size, "steps": summary["step"],
            "images_per_s": round(summary["images_seen"] / seconds, 1), "loss_start": start, "loss_end": end}


def check_detector(args, shared: Path, tmp: Path) -> dict:
    from training.detection.train import TrainConfig, train

    out = tmp / "detector.pt"
    cfg = TrainConfig(out=out, size=args.detector_size, img_size=256, batch=args.batch // 4 or 1, steps=args.steps,
                      warmup=max(1, args.steps // 10), workers=args.workers, threads=args.threads, log_every=1,
                      device=args.device, resume=False,
                      sources={"imglab": [str(shared / "detection" / "dlib_pascal_faces" / "training.xml")],
                               "backgrounds": str(shared / "detection" / "nonface_scenes")})
    t0 = time.perf_counter()
    path = train(cfg, progress=False)
    seconds = time.perf_counter() - t0
    card = json.loads(path.with_suffix(".json").read_text())
    start, end = _trend([json.loads(x)["loss"] for x in out.with_suffix(".log.jsonl").read_text().splitlines()])
    return {"network": f"detector-{args.detector_size}", "device": card["train"]["device"], "input": 256,
            "steps": card["train"]["steps_done"], "images_per_s": round(card["train"]["steps_done"] * cfg.batch / seconds, 1),
            "loss_start": start, "loss_end": end}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="cuda, cpu or auto [cuda]")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--networks", default=",".join([*NETWORKS, "detector"]))
    ap.add_argument("--detector-size", default="tiny")
    ap.add_argument("--small-inputs", action="store_true", help="reduced input sizes and widths (CPU)")
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2, help="detector sample-synthesis worker processes")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    import torch

    from iznet.config import shared_data_dir

    shared = shared_data_dir()
    if not shared.is_dir():
        print(f"gpu_check needs the shared data ({shared} is missing)", file=sys.stderr)
        return 2
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    print(f"torch {torch.__version__}, GPU: {gpu}, device asked: {args.device}", flush=True)
    rows, failed = [], False
    with tempfile.TemporaryDirectory(prefix="iznet-gpu-check-") as tmp:
        for name in [n for n in args.networks.split(",") if n]:
            try:
                row = (check_detector(args, shared, Path(tmp)) if name == "detector"
                       else check_embedder(name, args, shared, Path(tmp)))
                row["loss_falls"] = bool(row["loss_end"] is not None and row["loss_end"] < row["loss_start"])
                failed |= not row["loss_falls"] and args.steps >= 50
            except Exception as exc:  # noqa: BLE001 - one failing network is reported, the others still run
                row, failed = {"network": name, "error": f"{exc.__class__.__name__}: {str(exc)[:300]}"}, True
            rows.append(row)
            if "error" in row:
                print(f"{name:16s} FAILED {row['error']}", flush=True)
            else:
                print(f"{row['network']:16s} {row['device']:6s} input {row['input']:3d}  {row['steps']:4d} steps  "
                      f"{row['images_per_s']:8.1f} images/s  loss {row['loss_start']:.3f} -> {row['loss_end']:.3f}"
                      f"{'' if row['loss_falls'] else '  (loss did not fall)'}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"gpu": gpu, "rows": rows}, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
