"""MTCNN's backends side by side: ms per 640x480 photo through torch (the reference) and onnxruntime (the
default), on the same photos in one run, and whether they find the same faces.

    python -m bench.mtcnn_speed [--threads 1] [--rounds 3] [--photos 16]

The photos are the shared data's group photos (``groups/*/*.jpg``, 2 to 16 faces) resized to 640x480; without
the shared data, generated group scenes (:mod:`iznet.synthetic`). Each photo is detected by each backend in
turn, ``--rounds`` times; per photo the fastest round counts (load from other processes only ever adds time),
and the table gives the mean, median and range over the photos. Agreement: faces found by both, and the
largest difference of any box edge between them.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bench.common import Result, Skip, add_json_option, main_with_result, sig

NAME, TITLE = "mtcnn_speed", "MTCNN per 640x480 photo: torch (reference) vs onnxruntime (default)"


def photos(limit: int) -> tuple[list[np.ndarray], str]:
    import cv2

    from iznet.config import shared_data_dir
    from iznet.imageio import read_image

    files = sorted((shared_data_dir() / "groups").glob("*/*.jpg"))[:limit]
    if files:
        return [cv2.resize(read_image(f), (640, 480), interpolation=cv2.INTER_AREA) for f in files], \
            f"{len(files)} group photos of the shared data (groups/), resized to 640x480"
    from iznet.synthetic import draw_group, make_person

    rng = np.random.default_rng(0)
    people = [make_person(rng, f"p{i}") for i in range(4)]
    out = [cv2.resize(draw_group(people[:2 + i % 3], rng, 120)[0], (640, 480)) for i in range(limit)]
    return out, f"{limit} generated group scenes (no shared data), 640x480"


def run(args: argparse.Namespace) -> Result:
    import cv2
    import torch

    from iznet.detection.mtcnn import BACKENDS, MTCNN
    from iznet.imported import MissingModelError

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(1)
    try:
        dets = {b: MTCNN(backend=b, threads=args.threads) for b in BACKENDS[::-1]}  # torch first: the baseline
    except MissingModelError as e:
        raise Skip(str(e)) from None
    images, what = photos(args.photos)
    res = Result(NAME, TITLE)
    for d in dets.values():
        d.detect(images[0])  # warm up
    best = {b: np.full(len(images), np.inf) for b in dets}
    found: dict[tuple[str, int], list] = {}
    for _ in range(args.rounds):
        for i, im in enumerate(images):
            for b, d in dets.items():
                t0 = time.perf_counter()
                found[b, i] = d.detect(im)
                best[b][i] = min(best[b][i], time.perf_counter() - t0)
    faces = {b: sum(len(found[b, i]) for i in range(len(images))) for b in dets}
    same = worst = 0
    for i in range(len(images)):
        a = np.float32([f.as_list()[:4] for f in sorted(found["torch", i], key=lambda f: (f.x1, f.y1))])
        o = np.float32([f.as_list()[:4] for f in sorted(found["onnx", i], key=lambda f: (f.x1, f.y1))])
        if a.shape == o.shape:
            same += 1
            worst = max(worst, float(np.abs(a - o).max()) if a.size else 0.0)
    for b in dets:
        ms = best[b] * 1000
        res.row(backend=b, photos=len(images), ms_mean=sig(ms.mean(), 3), ms_median=sig(float(np.median(ms)), 3),
                ms_min=sig(ms.min(), 3), ms_max=sig(ms.max(), 3), photos_per_s=sig(1000 / ms.mean(), 3),
                faces=faces[b])
    res.compare("MTCNN, one 640x480 photo", "ms/photo (mean)", "torch", "onnx", best["torch"].mean() * 1000,
                best["onnx"].mean() * 1000, "lower")
    res.notes.append(f"{what}; {args.threads} thread(s); per photo the fastest of {args.rounds} interleaved rounds.")
    res.notes.append(f"same face count on {same} of {len(images)} photos; largest box-edge difference "
                     f"{worst:.3f} px (as_list rounding)")
    return res


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1, help="Torch/onnxruntime threads.")
    ap.add_argument("--rounds", type=int, default=3, help="Interleaved rounds; per photo the fastest counts.")
    ap.add_argument("--photos", type=int, default=16, help="How many photos.")
    add_json_option(ap)
    return ap


def main(argv: list[str] | None = None) -> Result:
    return main_with_result(run, parser(), argv, NAME, TITLE)


if __name__ == "__main__":
    main()
