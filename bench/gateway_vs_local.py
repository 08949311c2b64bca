"""Label latency through the gateway (client -> Ray Serve gRPC ingress -> detection, embedding and gallery
services) against the same Pipeline in this process, on the same photo, side by side in one run.

    python -m bench.gateway_vs_local [--photo PATH] [--repeats 30] [--json out.json]

The store is built in a temporary folder: with the team's shared photos, a gallery of the
``face_recognition_knn`` people and their two-person photo ``kit_with_rose.jpg``; without, generated people and
a group photo of them. Both paths use the same detector (haar), embedder (baseline-lbp) and gallery version.
Calls are sequential (one in flight), so the numbers are latency, not throughput; both paths get the same
thread budget (``--threads``, 1 by default, as ``iznet up`` gives each service). The gateway's per-stage
timings split its overhead into: the hops (client <-> gateway ingress <-> replica), the service calls' wire
and (de)serialisation cost (a stage's round trip minus the work the service reports), the crops' PNG
round trip, and the work itself.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path


def build_store(root: Path, photo: Path | None) -> tuple[Path, bytes, str]:
    from iznet.config import shared_data_dir
    from iznet.gallery import GalleryStore, make_embedder
    from iznet.pipeline import Pipeline, make_detector

    gs = GalleryStore(root / "store")
    emb, det = make_embedder("baseline-lbp"), make_detector("haar")
    frk = shared_data_dir() / "face_recognition_knn"
    g = gs.create("default", emb.version)
    if frk.is_dir():
        Pipeline(det, emb, g).enroll_folder(frk / "train")
        photo = photo or frk / "test" / "kit_with_rose.jpg"
        what = "face_recognition_knn gallery"
    else:
        from tests.services.conftest import build_world

        world = build_world(root / "world")
        shutil.rmtree(root / "store", ignore_errors=True)
        shutil.copytree(world.store.root, root / "store")
        gs = GalleryStore(root / "store")
        data = world.group_photo(world.people)
        return root / "store", data, "generated people (no shared data here)"
    gs.save(g)
    return root / "store", photo.read_bytes(), f"{what}, photo {photo.name}"


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photo", type=Path, default=None, help="Photo to label (default: see above).")
    ap.add_argument("--repeats", type=int, default=30, help="Timed calls per path (after 3 warm-up calls).")
    ap.add_argument("--json", type=Path, default=None, help="Also write the numbers here.")
    ap.add_argument("--threads", type=int, default=1,
                    help="Threads OpenCV/FAISS/torch may use, in this process as in the services (default 1, "
                         "what `iznet up` gives each service).")
    args = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # before FAISS loads; the services get the same
    import cv2

    cv2.setNumThreads(args.threads)

    from iznet.client import GatewayClient
    from iznet.pipeline import Pipeline
    from services.stack import Stack, StackConfig

    root = Path(tempfile.mkdtemp(prefix="iznet-bench-"))
    try:
        store, photo, what = build_store(root, args.photo)
        pipe = Pipeline.from_store(store, "default")
        local_ms, local_stages = [], []
        for i in range(args.repeats + 3):
            t0 = time.perf_counter()
            res = pipe.label(photo)
            if i >= 3:
                local_ms.append((time.perf_counter() - t0) * 1e3)
                local_stages.append(res.timings)
        local_names = [f.name for f in res.faces]

        t_start = time.perf_counter()
        stack = Stack(StackConfig(store=store, model="baseline-lbp")).start()
        startup_s = time.perf_counter() - t_start
        try:
            remote_ms, remote_stages = [], []
            with GatewayClient(stack.gateway) as gw:
                for i in range(args.repeats + 3):
                    t0 = time.perf_counter()
                    r = gw.label(photo)
                    if i >= 3:
                        remote_ms.append((time.perf_counter() - t0) * 1e3)
                        remote_stages.append(r.timings_ms)
            remote_names = r.names
        finally:
            stack.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)

    med = statistics.median
    loc, rem = med(local_ms), med(remote_ms)

    def mstage(rows, key):
        vals = [row.get(key, 0.0) for row in rows]
        return med(vals) if vals else 0.0

    gw_total = mstage(remote_stages, "total")
    det_rt, det_work = mstage(remote_stages, "detect"), sum(mstage(remote_stages, f"detection.{k}")
                                                              for k in ("decode", "detect", "crop"))
    report = {
        "what": what, "repeats": args.repeats, "stack_startup_s": round(startup_s, 1),
        "same_names": local_names == remote_names, "names": remote_names,
        "in_process_ms": {"median": round(loc, 1), "p90": round(percentile(local_ms, 0.9), 1),
                          **{k: round(mstage(local_stages, k), 1) for k in ("decode", "detect", "align", "embed",
                                                                            "search")}},
        "gateway_ms": {"median": round(rem, 1), "p90": round(percentile(remote_ms, 0.9), 1)},
        "ratio_gateway_over_in_process": round(rem / loc, 2),
        "overhead_ms": {
            "total": round(rem - loc, 1),
            "client<->ingress<->replica (client time - gateway's own total)": round(rem - gw_total, 1),
            "detection call: wire + (de)serialise (round trip - service's work)": round(det_rt - det_work, 1),
            "detection service work (decode+detect+align+PNG crops)": round(det_work, 1),
            "embed call incl. batching window (round trip)": round(mstage(remote_stages, "embed"), 1),
            "search call (round trip)": round(mstage(remote_stages, "search"), 1),
        },
    }
    print(json.dumps(report, indent=2))
    print(f"\nLabel, {what}: in-process {loc:.1f} ms, through the gateway {rem:.1f} ms "
          f"(median of {args.repeats}) -> ratio {rem / loc:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
