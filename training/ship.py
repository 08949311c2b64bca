"""Ship an embedder trained here inside the package: half-precision weights and its card with what was measured.

    python -m training.measure_imported --model runs/distill/best --out runs/distill-lfw.json
    python -m training.ship runs/distill/best --name distilled-small --measured runs/distill-lfw.json \\
        --speed runs/distill-speed.json

Writes ``iznet/weights/NAME/model.pt`` (float16: half the bytes, the same verification to the third decimal;
the loader casts back to float32) and ``model.json``: the training card, plus ``threshold`` (the unknown
threshold at FAR 1e-3 on LFW folds 1-4, from the measurement) and ``figures`` (LFW fold 5, speed). The
prose card (``MODEL_CARD.md``) is written by hand beside them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a trained embedder's folder (model.pt + model.json)")
    ap.add_argument("--name", required=True)
    ap.add_argument("--measured", type=Path, required=True, help="training.measure_imported's JSON")
    ap.add_argument("--speed", type=Path, default=None, help="JSON of measured speeds to record")
    args = ap.parse_args(argv)

    import torch

    from iznet.store import sha256_file

    out = ROOT / "iznet" / "weights" / args.name
    out.mkdir(parents=True, exist_ok=True)
    state = torch.load(args.run / "model.pt", map_location="cpu", weights_only=True)
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in state.items()}, out / "model.pt")
    card = json.loads((args.run / "model.json").read_text())
    measured = json.loads(args.measured.read_text())
    card.update({
        "name": args.name, "version": card.get("version", "1"), "source": "trained here",
        "licence": "MIT (this project); trained on LFW photos (research use) with dlib-resnet (CC0) as teacher",
        "weights_sha256": sha256_file(out / "model.pt"), "weights_dtype": "float16",
        "threshold": measured["calibration"],
        "figures": {"lfw_fold_5": _fig(measured["fold_5"]), "lfw_folds_1_5": _fig(measured["folds_1_5"]),
                    "measured_through": f"{measured['detector']['name']} + chip {measured['chip']}",
                    **(json.loads(args.speed.read_text()) if args.speed else {})},
    })
    card["metrics"].pop("dev_history", None)
    (out / "model.json").write_text(json.dumps(card, indent=2) + "\n")
    print(f"{out}: {(out / 'model.pt').stat().st_size / 1e6:.1f} MB")
    return out


def _fig(r: dict) -> dict:
    return {"accuracy": round(r["accuracy"], 4), "accuracy_std": round(r["accuracy_std"], 4),
            "auc": round(r["auc"], 4), "tar_at_far_1e-3": round(r["tar_at_far"], 4)}


if __name__ == "__main__":
    main()
