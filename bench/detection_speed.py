"""Detector speed side by side: ms per 640x480 image for the teachers and trained detectors, one at a time
and (for the trained ones) in batches.

    python -m bench.detection_speed --detector runs/detection/yolo-tiny.pt [--threads 1] [--repeats 10]

On a shared machine compare the rows of one run, not numbers across runs.
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np
import torch


def _time(fn, repeats: int) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) * 1000 / repeats


def main(argv: list[str] | None = None) -> None:
    from iznet.cli.detect import _make_detector
    from iznet.config import shared_data_dir
    from iznet.detection.teachers import TEACHERS
    from iznet.imageio import read_image

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--detector", action="append", default=[], help="trained detector(s) to time beside the teachers")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--batch", type=int, default=4, help="batch size for the batched rows")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(1)
    probe = shared_data_dir() / "groups" / "mtcnn_pytorch" / "office1.jpg"
    img = read_image(probe) if probe.is_file() else np.random.default_rng(0).integers(0, 255, (480, 640, 3), np.uint8)
    img = cv2.resize(img, (640, 480))
    print(f"| detector | mode | ms per 640x480 image | faces |  ({args.threads} thread(s), {args.repeats} repeats)")
    print("|---|---|---|---|")
    for spec in [*args.detector, *TEACHERS]:
        det = _make_detector(spec, args.threads, None, None)
        ms = _time(lambda: det.detect(img), args.repeats)
        print(f"| {det.name} | single | {ms:.1f} | {len(det.detect(img))} |", flush=True)
        if hasattr(det, "detect_batch"):
            batch = [img] * args.batch
            ms_b = _time(lambda: det.detect_batch(batch), max(1, args.repeats // args.batch)) / args.batch
            print(f"| {det.name} | batch of {args.batch} | {ms_b:.1f} | |", flush=True)


if __name__ == "__main__":
    main()
