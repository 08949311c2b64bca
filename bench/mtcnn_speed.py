"""MTCNN's time per 640x480 photo against the teachers (Haar, Ultra-Light RFB-320 and -640), one thread.

    python -m bench.mtcnn_speed [--threads 1] [--repeats 3] [--rounds 3] [--batch 4] [--min-face 20] [--json PATH]

The probes are real photos from the shared data (a group photo, two press photos, a TV cast, a couple)
resized to 640x480; without the shared data, noise. Each detector runs the probes in turn (``repeats`` passes
over all of them per round), detectors interleaved over several rounds, and the median round is kept, so
load from other processes on a shared machine hits every detector alike. MTCNN's cost grows with the number
of candidate windows (faces and face-like texture), so its time varies by photo more than the single-pass
teachers': the per-probe times are in the notes. MTCNN also runs in batches (``detect_batch``: same-sized
photos share their P-Net passes, all crops of a stage go through R-/O-Net together).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from bench.common import Result, add_json_option, main_with_result, sig

NAME, TITLE = "mtcnn_speed", "MTCNN time per 640x480 photo vs the teachers (one thread)"

PROBES = ("groups/mtcnn_pytorch/office1.jpg", "face_recognition_knn/test/obama_and_biden.jpg",
          "face_recognition_knn/test/kit_with_rose.jpg", "groups/bbt/bbt1.jpg", "groups/deepface/couple.jpg")


def ms_per_image(fn, images: list[np.ndarray], repeats: int) -> float:
    t0 = time.perf_counter()
    for _ in range(repeats):
        for im in images:
            fn(im)
    return (time.perf_counter() - t0) * 1000 / (repeats * len(images))


def run(args: argparse.Namespace) -> Result:
    import cv2
    import torch

    from iznet.config import shared_data_dir
    from iznet.detection.mtcnn import MTCNN
    from iznet.detection.teachers import TEACHERS, make_teacher
    from iznet.errors import IZNetError
    from iznet.imageio import read_image

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(1)
    res = Result(NAME, TITLE)
    shared = shared_data_dir()
    paths = [shared / p for p in PROBES if (shared / p).is_file()]
    if paths:
        images = [cv2.resize(read_image(p), (640, 480), interpolation=cv2.INTER_AREA) for p in paths]
        probe_names = [p.name for p in paths]
    else:
        images = [np.random.default_rng(0).integers(0, 255, (480, 640, 3), np.uint8)]
        probe_names = ["noise (no shared data)"]

    detectors, skipped = {}, {}
    try:
        detectors["mtcnn"] = MTCNN(min_face_size=args.min_face, threads=args.threads)
    except IZNetError as e:  # the weights' package is not installed
        skipped["mtcnn"] = str(e)
    for spec in TEACHERS:
        try:
            detectors[spec] = make_teacher(spec, **({} if spec == "haar" else {"threads": args.threads}))
        except IZNetError as e:  # the Ultra-Light models live in the shared data folder
            skipped[spec] = str(e)
    for det in detectors.values():
        det.detect(images[0])  # warm up

    times: dict[tuple[str, str], list[float]] = {}
    per_probe: dict[str, list[list[float]]] = {}
    for _ in range(args.rounds):
        for spec, det in detectors.items():
            times.setdefault((spec, "single"), []).append(ms_per_image(det.detect, images, args.repeats))
            if hasattr(det, "detect_batch"):
                batch = [images[i % len(images)] for i in range(args.batch)]
                t0 = time.perf_counter()
                for _ in range(args.repeats):
                    det.detect_batch(batch)
                times.setdefault((spec, f"batch of {args.batch}"), []).append(
                    (time.perf_counter() - t0) * 1000 / (args.repeats * args.batch))
            if spec == "mtcnn":
                per_probe.setdefault(spec, []).append([ms_per_image(det.detect, [im], 1) for im in images])

    median = {k: statistics.median(v) for k, v in times.items()}
    for (spec, mode), ms in median.items():
        det = detectors[spec]
        faces = sum(len(det.detect(im)) for im in images) if mode == "single" else None
        res.row(detector=det.name, kind="imported" if spec == "mtcnn" else "teacher", mode=mode, status="ok",
                ms_per_image=sig(ms, 3), images_per_s=sig(1000 / ms, 3), faces_on_probes=faces)
    for name, why in skipped.items():
        res.row(detector=name, kind="imported" if name == "mtcnn" else "teacher", mode="single",
                status=f"skipped: {why}")
    for teacher in TEACHERS:
        if ("mtcnn", "single") in median and (teacher, "single") in median:
            res.compare("detect one 640x480 photo: mtcnn", "ms/image", teacher, "mtcnn",
                        median[(teacher, "single")], median[("mtcnn", "single")], "lower")
    if "mtcnn" in per_probe:
        ms = np.median(np.asarray(per_probe["mtcnn"]), axis=0)
        res.notes.append("mtcnn per probe (ms): " + ", ".join(f"{n} {sig(float(m), 3)}" for n, m in zip(probe_names, ms)))
    res.notes.append(f"probes: {', '.join(probe_names)}, each resized to 640x480; {args.threads} thread(s); "
                     f"MTCNN min face {args.min_face} px; median of {args.rounds} interleaved rounds of "
                     f"{args.repeats} passes over the probes.")
    return res


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1, help="Torch/onnxruntime threads.")
    ap.add_argument("--repeats", type=int, default=3, help="Passes over the probes per timed round.")
    ap.add_argument("--rounds", type=int, default=3, help="Interleaved rounds; the median is kept.")
    ap.add_argument("--batch", type=int, default=4, help="Photos per detect_batch call (MTCNN).")
    ap.add_argument("--min-face", type=float, default=20, help="MTCNN's smallest face (px).")
    add_json_option(ap)
    return ap


def main(argv: list[str] | None = None) -> Result:
    return main_with_result(run, parser(), argv, NAME, TITLE)


if __name__ == "__main__":
    main()
