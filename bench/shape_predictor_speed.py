"""dlib's 5-point landmark predictor: ms per face of IZ*Net's NumPy reimplementation
(iznet/data/shape_predictor.py) against dlib's own C++ one, one thread, on the same faces.

    python -m bench.shape_predictor_speed [--repeats 20] [--rounds 3] [--batch 8] [--json PATH]

The faces are dlib's HOG detections in a few shared photos (LFW portraits and a group photo), or fixed boxes
on noise without the shared data (the cost hardly depends on the pixels). Rows: ours one face per call
(``predict``), ours all the faces of a photo per call (``predict_many``), dlib one face per call; plus each
model's load time. Wall and CPU time per face are both reported (CPU time leaves out the time other
processes hold the core, which on a shared machine is most of the noise). Implementations are timed in
turn, several rounds interleaved, and the median round is kept, so load from other processes on a shared
machine hits each alike. dlib is a test-only reference:
without it its row says so and there is no comparison.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # one thread, before NumPy loads
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from bench.common import Result, Skip, add_json_option, main_with_result, sig  # noqa: E402

NAME, TITLE = "shape_predictor_speed", "5-point landmarks: ms per face, NumPy reimplementation vs dlib"


def _faces(args: argparse.Namespace) -> tuple[list[tuple[np.ndarray, list[tuple[int, int, int, int]]]], str]:
    """[(BGR image, [dlib rectangles as (l, t, r, b)])] and where they came from."""
    import cv2

    from iznet.config import shared_data_dir

    root = shared_data_dir()
    paths = [root / "groups" / "bbt" / "bbt4.jpg"]
    lfw = root / "lfw"
    if lfw.is_dir():
        people = sorted(p for p in lfw.iterdir() if p.is_dir())
        paths += [sorted(p.glob("*.jpg"))[0] for p in people[::300]]
    photos = [(p, cv2.imread(str(p))) for p in paths if p.is_file()]
    photos = [(p, im) for p, im in photos if im is not None]
    try:
        import dlib
        det = dlib.get_frontal_face_detector()
    except ImportError:
        det = None
    out = []
    if photos and det is not None:
        for p, im in photos:
            rects = det(np.ascontiguousarray(im[:, :, ::-1]), 1 if max(im.shape[:2]) <= 700 else 0)
            rects = [(r.left(), r.top(), r.right(), r.bottom()) for r in rects]
            if rects:
                out.append((im, rects))
    if out:
        return out, f"{sum(len(r) for _, r in out)} dlib HOG detections in {len(out)} shared photos"
    noise = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    return [(noise, [(100, 100, 229, 229), (300, 120, 379, 199), (450, 200, 600, 350)])], \
        "3 fixed boxes on a noise image (no shared data or no dlib to detect with)"


def _ms_per_face(fn, n_faces: int, repeats: int) -> tuple[float, float]:
    """(wall, CPU) ms per face: CPU time leaves out the time other processes hold the core."""
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        fn()
    k = repeats * n_faces
    return (time.perf_counter() - t0) * 1000 / k, (time.process_time() - c0) * 1000 / k


def run(args: argparse.Namespace) -> Result:
    from iznet.data.shape_predictor import ShapePredictor, box_from_dlib_rect
    from iznet.imported import MissingModelError, imported_file

    try:
        path = imported_file("dlib-shape-5")
    except MissingModelError as e:
        raise Skip(str(e)) from None
    res = Result(NAME, TITLE)
    t0 = time.perf_counter()
    ours = ShapePredictor.load(path)
    load_ours = time.perf_counter() - t0
    try:
        import dlib
        t0 = time.perf_counter()
        theirs = dlib.shape_predictor(str(path))
        load_dlib = time.perf_counter() - t0
    except ImportError:
        dlib, theirs, load_dlib = None, None, None
    photos, source = _faces(args)
    n_faces = sum(len(r) for _, r in photos)
    items = []  # (BGR, RGB, boxes, dlib rectangles)
    for im, rects in photos:
        boxes = [box_from_dlib_rect(*r) for r in rects]
        drects = [dlib.rectangle(*r) for r in rects] if dlib else []
        items.append((im, np.ascontiguousarray(im[:, :, ::-1]), boxes, drects))

    def ours_single():
        for im, _, boxes, _ in items:
            for b in boxes:
                ours.predict(im, b)

    def ours_many():
        for im, _, boxes, _ in items:
            for i in range(0, len(boxes), args.batch):
                ours.predict_many(im, boxes[i:i + args.batch])

    def dlib_single():
        for _, rgb, _, drects in items:
            for r in drects:
                theirs(rgb, r)

    impls = {"iznet numpy, predict (1 face/call)": ours_single,
             f"iznet numpy, predict_many (<= {args.batch} faces/call)": ours_many}
    if theirs is not None:
        impls["dlib C++, one face/call"] = dlib_single
    # parity on these faces, so the speed is of the same answers
    mismatched = 0
    if theirs is not None:
        for im, rgb, boxes, drects in items:
            mine = ours.predict_many(im, boxes, dlib_rounding=True)
            for m, r in zip(mine, drects):
                ref = np.array([[p.x, p.y] for p in theirs(rgb, r).parts()], np.float32)
                mismatched += int(not np.array_equal(m, ref))
    for fn in impls.values():  # warm up
        fn()
    times: dict[str, list[float]] = {k: [] for k in impls}
    cpu: dict[str, list[float]] = {k: [] for k in impls}
    for _ in range(args.rounds):
        for name, fn in impls.items():
            wall_ms, cpu_ms = _ms_per_face(fn, n_faces, args.repeats)
            times[name].append(wall_ms)
            cpu[name].append(cpu_ms)
    median = {k: statistics.median(v) for k, v in times.items()}
    for name, ms in median.items():
        res.row(implementation=name, status="ok", ms_per_face=sig(ms, 3), cpu_ms_per_face=sig(
            statistics.median(cpu[name]), 3), faces_per_s=sig(1000 / ms, 3),
            load_s=sig(load_dlib if name.startswith("dlib") else load_ours, 3))
    if theirs is None:
        res.row(implementation="dlib C++, one face/call", status="skipped: dlib is not installed (pip install "
                "dlib-bin; a test-only reference)")
    else:
        dl = median["dlib C++, one face/call"]
        dl_cpu = statistics.median(cpu["dlib C++, one face/call"])
        for name in list(impls)[:2]:
            res.compare(f"landmarks of one face: {name}", "ms/face", "dlib C++", name, dl, median[name], "lower")
            res.compare(f"landmarks of one face: {name}", "CPU ms/face", "dlib C++", name, dl_cpu,
                        statistics.median(cpu[name]), "lower")
        res.notes.append(f"parity on these faces: {n_faces - mismatched} of {n_faces} identical to dlib's points "
                         "after dlib's rounding")
    res.notes.append(f"{source}; one thread; median of {args.rounds} interleaved rounds of {args.repeats} "
                     f"passes over all {n_faces} faces. {ours!r}.")
    res.params.update(faces=n_faces)
    return res


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=20, help="Passes over all the faces per timed round.")
    ap.add_argument("--rounds", type=int, default=3, help="Interleaved rounds; the median is kept.")
    ap.add_argument("--batch", type=int, default=8, help="Faces per predict_many call (those of one photo).")
    add_json_option(ap)
    return ap


def main(argv: list[str] | None = None) -> Result:
    return main_with_result(run, parser(), argv, NAME, TITLE)


if __name__ == "__main__":
    main()
