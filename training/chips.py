"""Aligned chips and a teacher's embeddings for the photos at hand: the data a student is distilled from.

    python -m training.chips --out runs/lfw-dlib-chips                 # every LFW photo, dlib-resnet teacher
    python -m training.chips --out runs/extra-chips --photos DIR --all-faces

Each photo goes through the detector and the teacher's own chip (``dlib:150:0.25`` from MTCNN's landmarks,
exactly as a gallery cuts it). The output is a face folder the trainer reads like any other
(``<out>/<person>/<file>.png``, lossless) plus ``teacher.npz``: for every chip its relative path, the
teacher's unit vector of the chip and of its mirror image (a student trained with flips regresses onto the
matching one), the landmarks that placed it and the teacher's version. Photos where no face is found are
listed in ``chips.json``, not guessed.

``--all-faces`` keeps every face of every photo (unlabelled faces from group photos: each becomes its own
"person" folder, which only the distillation loss uses); the default keeps the person's face of a portrait
(largest, most central), as LFW needs.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np


def build(photos: list[Path], root: Path, out: Path, *, teacher: str, detector: str, threads: int,
          all_faces: bool, min_face: int) -> dict:
    from tqdm import tqdm

    from iznet.data.align import choose_face, face_chip
    from iznet.detection.find import detect_faces
    from iznet.imageio import read_image
    from iznet.registry import create_detector, create_embedder

    emb = create_embedder(teacher, backend="onnx", threads=threads)
    det = create_detector(detector, threads=threads)
    out.mkdir(parents=True, exist_ok=True)
    rel, chips, lms, missed = [], [], [], []
    t0 = time.perf_counter()
    for p in tqdm(photos, desc="detect + align", unit="photo", mininterval=5):
        image = read_image(p)
        h, w = image.shape[:2]
        faces, _ = detect_faces(det, image, min_face, clip=False)
        if not faces:
            missed.append(str(p.relative_to(root)))
            continue
        chosen = range(len(faces)) if all_faces else [choose_face(faces, w, h).index]
        for k in chosen:
            chip, lm, _how = face_chip(image, faces[k], emb.chip)
            r = p.relative_to(root)
            if all_faces:  # every face its own unlabelled "person"
                r = Path(f"{'_'.join(r.with_suffix('').parts)}_face{k}") / f"{r.stem}_face{k}.png"
            else:
                r = r.with_suffix(".png")
            (out / r).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(out / r), chip)  # lossless: the chip on disk is the one embedded below
            rel.append(str(r))
            chips.append(chip)
            lms.append(np.asarray(lm if lm is not None else np.full((5, 2), np.nan), np.float32))
    detect_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    vec = emb.embed(chips) if chips else np.zeros((0, 128), np.float32)
    vec_flip = emb.embed([c[:, ::-1].copy() for c in chips]) if chips else vec
    embed_s = time.perf_counter() - t1
    np.savez(out / "teacher.npz", paths=np.array(rel), embedding=vec.astype(np.float32),
             embedding_flip=vec_flip.astype(np.float32), landmarks=np.stack(lms) if lms else np.zeros((0, 5, 2)),
             teacher=json.dumps(emb.version), chip=str(emb.chip))
    info = {"photos": len(photos), "chips": len(rel), "no_face_found": len(missed), "no_face": missed,
            "teacher": emb.version, "detector": det.version, "chip": str(emb.chip),
            "seconds": {"detect_align": round(detect_s, 1), "teacher": round(embed_s, 1)}, "threads": threads}
    (out / "chips.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--photos", type=Path, default=None, help="photo folder [the shared data's LFW]")
    ap.add_argument("--teacher", default="dlib-resnet")
    ap.add_argument("--detector", default="mtcnn")
    ap.add_argument("--all-faces", action="store_true", help="every face of every photo, not the person's")
    ap.add_argument("--min-face", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    import torch

    from iznet.config import shared_data_dir
    from iznet.imageio import IMAGE_SUFFIXES

    torch.set_num_threads(args.threads)
    root = args.photos or shared_data_dir() / "lfw"
    photos = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    info = build(photos, root, args.out, teacher=args.teacher, detector=args.detector, threads=args.threads,
                 all_faces=args.all_faces, min_face=args.min_face)
    print(json.dumps({k: v for k, v in info.items() if k != "no_face"}, indent=2))
    return info


if __name__ == "__main__":
    main()
