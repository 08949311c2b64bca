"""dlib's face descriptor three ways, side by side in one run: dlib itself (``compute_face_descriptor``, the
reference, a test-only dependency), the project's torch port (``iznet.embedding.dlib_resnet``) and its ONNX
export under onnxruntime; ms per face by batch size, one CPU thread each, and the largest difference of each
from dlib's vectors on the same chips.

    python -m bench.dlib_embedder_speed                      # batches 1,32; 3 interleaved rounds of 1 s
    python -m bench.dlib_embedder_speed --batches 1,8,32 --rounds 5 --seconds 2 --json out.json

The chips are dlib's own aligned 150x150 faces from the shared data (``dlib_johns/``, repeated to fill a
batch) or, without it, generated ones (speed does not depend on the content). A batch goes to dlib as one
list (``compute_face_descriptor([chips])``, which runs its network 16 chips at a time), to torch and
onnxruntime as one (N, 150, 150, 3) array. Rounds are interleaved (dlib, torch, onnx, dlib, ...) and the
median round is kept, so load from other processes hits every backend alike. Without dlib its rows say
"skipped" and torch is the baseline. ``--json PATH`` writes the result (bench/common.py).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import Result, Skip, add_json_option, main_with_result, sig

NAME, TITLE = "dlib_embedder_speed", "dlib's face descriptor: dlib vs the torch port vs onnxruntime"


def chips(n: int) -> tuple[np.ndarray, str]:
    """n RGB 150x150 chips: the shared dlib_johns chips (cycled) or generated ones."""
    import cv2

    from iznet.config import shared_data_dir

    files = sorted((shared_data_dir() / "dlib_johns").glob("*/*.jpg"))
    if files:
        imgs = [cv2.imread(str(files[i % len(files)]))[..., ::-1] for i in range(n)]
        if all(i is not None and i.shape == (150, 150, 3) for i in imgs):
            return np.ascontiguousarray(np.stack(imgs)), f"dlib_johns ({len(files)} chips, cycled)"
    rng = np.random.default_rng(0)
    low = rng.integers(0, 256, (n, 10, 10, 3)).astype(np.float32)
    idx = np.arange(150) * 10 // 150
    return np.clip(low[:, idx][:, :, idx] + rng.normal(0, 10, (n, 150, 150, 3)), 0, 255).astype(np.uint8), \
        "generated (no shared data)"


def time_round(fn, seconds: float) -> float:
    """ms per call over at least ``seconds`` (and at least one call)."""
    calls, t0 = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        dt = time.perf_counter() - t0
        if dt >= seconds:
            return 1000 * dt / calls


def run(args: argparse.Namespace) -> Result:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(args.threads))
    import torch

    from iznet.embedding.dlib_resnet import ONNX_INPUT, export_onnx, load_dlib_resnet
    from iznet.imported import MissingModelError, imported_file

    torch.set_num_threads(args.threads)
    res = Result(NAME, TITLE)
    try:
        weights = imported_file("dlib-resnet")
    except MissingModelError as e:
        raise Skip(str(e)) from None
    batches = [int(b) for b in args.batches.split(",")]
    t0 = time.perf_counter()
    net = load_dlib_resnet(weights)
    load_s = time.perf_counter() - t0

    fns: dict[str, object] = {}
    skipped: dict[str, str] = {}
    try:
        import dlib

        rec = dlib.face_recognition_model_v1(str(weights))
        fns["dlib"] = lambda x: np.array([np.array(d) for d in rec.compute_face_descriptor(list(x))])
        res.params["dlib"] = f"{dlib.__version__} (BLAS: {dlib.DLIB_USE_BLAS}, CUDA: {dlib.DLIB_USE_CUDA})"
    except ImportError:
        skipped["dlib"] = "the dlib package is not installed (it is a test-only dependency: pip install dlib-bin)"

    def run_torch(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return net(torch.from_numpy(x)).numpy()

    fns["torch"] = run_torch
    work = Path(tempfile.mkdtemp(prefix="iznet-dlib-bench-"))
    try:
        try:
            import onnxruntime as ort

            path = export_onnx(net, work / "dlib_resnet.onnx")
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = opts.inter_op_num_threads = args.threads
            sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            fns["onnx"] = lambda x: sess.run(None, {ONNX_INPUT: x.astype(np.float32)})[0]
        except ImportError:
            skipped["onnx"] = "onnxruntime is not installed"
        base = "dlib" if "dlib" in fns else "torch"
        for b in batches:
            x, source = chips(b)
            ref = np.asarray(fns[base](x), np.float64)  # also warms every backend up
            diffs = {n: float(np.abs(np.asarray(f(x), np.float64) - ref).max()) for n, f in fns.items()}
            ms: dict[str, list[float]] = {n: [] for n in fns}
            for _ in range(args.rounds):
                for n, f in fns.items():
                    ms[n].append(time_round(lambda: f(x), args.seconds))
            for n in ("dlib", "torch", "onnx"):
                if n in skipped:
                    res.row(backend=n, batch=b, status=f"skipped: {skipped[n]}")
                    continue
                med = statistics.median(ms[n])
                res.row(backend=n, batch=b, status="ok", ms_per_face=sig(med / b, 3), ms_per_call=sig(med, 3),
                        faces_per_s=sig(1000 * b / med, 3), rounds_ms_per_face=[sig(m / b, 3) for m in ms[n]],
                        **{f"max_abs_diff_vs_{base}": sig(diffs[n], 2)})
                if n != base:
                    res.compare(f"ms per face, batch {b}", "ms/face", base, n, statistics.median(ms[base]) / b,
                                med / b, better="lower")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    res.params["chips"] = source
    res.notes.append(f"median of {args.rounds} interleaved rounds of >= {args.seconds} s, {args.threads} "
                     f"thread(s); the torch port loads dlib's file in {load_s:.2f} s; descriptors are raw "
                     "(not normalised) 128-d vectors, components up to about 0.5.")
    return res


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", default="1,32", help="Batch sizes. [1,32]")
    ap.add_argument("--seconds", type=float, default=1.0, help="Seconds per timed round (at least one call). [1]")
    ap.add_argument("--rounds", type=int, default=3, help="Interleaved rounds per (backend, batch). [3]")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads for every backend. [1]")
    add_json_option(ap)
    return ap


def main(argv: list[str] | None = None) -> Result:
    return main_with_result(run, parser(), argv, NAME, TITLE)


if __name__ == "__main__":
    main()
