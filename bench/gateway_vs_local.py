"""Label through the gateway (client -> Ray Serve gRPC ingress -> detection, embedding and gallery services)
against the same Pipeline in this process, on the same photo, with 1 client and with concurrent clients:
latency p50/p95 and throughput (photos per second), side by side in one run.

    python -m bench.gateway_vs_local [--photo PATH] [--repeats 30] [--clients 1,4] [--json PATH]

The store is built in a temporary folder. With the team's shared photos: a gallery of three LFW people (three
photos each) and a VGA (640x480) photo of the three of them, their photos the gallery does not hold, pasted
on a scene with no faces; without: generated people and a group photo of them. Both paths use the default
models (MTCNN, dlib's ResNet: what `iznet gallery enroll` gives a user), the same gallery version, and the
same engines (onnxruntime for both models).
With N clients, N threads each send ``--repeats`` calls back to back (after 3 warm-up calls each): in-process
every thread has its own Pipeline (OpenCV's cascades keep per-call state: per-thread detectors and one
alignment at a time, as in the detection service), through the gateway its own gRPC channel. The in-process runs go first, before the
stack starts, so its idle processes do not slow them. Both paths get the same thread budget per worker
(``--threads``, 1 by default, as ``iznet up`` gives each service); the whole machine is theirs.
The 1-client gateway calls' per-stage timings split its overhead into hops, wire and work (in the notes).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

from bench.common import Result, add_json_option, main_with_result, percentile, sig

NAME, TITLE = "gateway_vs_local", "Label: through the gateway vs the same pipeline in-process"
WARMUP = 3


PEOPLE = ("Colin_Powell", "Tony_Blair", "Hugo_Chavez")


def vga_photo(lfw: Path, scene: Path, index: int = 10) -> bytes:
    """640x480: a no-face scene with each person's ``index``-th LFW photo (the face's middle 160 px of 250,
    shown at 180 px) side by side, as in a group photo."""
    import cv2

    from iznet.imageio import encode_image, read_image

    canvas = cv2.resize(read_image(scene), (640, 480), interpolation=cv2.INTER_AREA)
    for k, person in enumerate(PEOPLE):
        face = read_image(lfw / person / f"{person}_{index:04d}.jpg")[45:205, 45:205]
        canvas[150:330, 25 + k * 205:205 + k * 205] = cv2.resize(face, (180, 180), interpolation=cv2.INTER_AREA)
    return encode_image(canvas, ".jpg", 92)


def build_store(root: Path, photo: Path | None, threads: int) -> tuple[Path, bytes, str]:
    from iznet.config import shared_data_dir
    from iznet.gallery import GalleryStore
    from iznet.pipeline import Pipeline
    from iznet.registry import create_detector, create_embedder, detector_threads

    lfw = shared_data_dir() / "lfw"
    if not all((lfw / p).is_dir() for p in PEOPLE):
        from tests.services.conftest import build_world

        world = build_world(root / "world")
        shutil.copytree(world.store.root, root / "store")
        data = photo.read_bytes() if photo else world.group_photo(world.people)
        return root / "store", data, "generated people (no shared data here)"
    gs = GalleryStore(root / "store")
    emb, det = create_embedder("default", threads=threads), create_detector("default", **detector_threads("default", threads))
    g = gs.create("default", emb.version)
    pipe = Pipeline(det, emb, g)
    for person in PEOPLE:
        for i in (1, 2, 3):
            pipe.enroll_image(person, lfw / person / f"{person}_{i:04d}.jpg")
    gs.save(g)
    if photo:
        return root / "store", photo.read_bytes(), f"3 LFW people enrolled, photo {photo.name}"
    scene = sorted((shared_data_dir() / "detection" / "nonface_scenes").glob("*.jpg"))[0]
    return (root / "store", vga_photo(lfw, scene),
            f"3 LFW people enrolled ({', '.join(PEOPLE)}), a 640x480 photo of the three (photos not enrolled)")


def hammer(make_caller: Callable[[], Callable[[], object]], clients: int, repeats: int):
    """``clients`` threads, each with its own caller, make ``repeats`` timed calls after WARMUP untimed ones.

    Returns (latencies in ms, wall seconds of the timed part, the last answer)."""
    callers = [make_caller() for _ in range(clients)]
    ready, go = threading.Barrier(clients + 1), threading.Event()
    latencies: list[list[float]] = [[] for _ in range(clients)]
    last: list[object] = [None] * clients
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            for _ in range(WARMUP):
                callers[k]()
            ready.wait()
            go.wait()
            for _ in range(repeats):
                t0 = time.perf_counter()
                last[k] = callers[k]()
                latencies[k].append((time.perf_counter() - t0) * 1e3)
        except BaseException as e:  # reported by the caller; the barrier must not hang
            errors.append(e)
            ready.abort()

    threads = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(clients)]
    for t in threads:
        t.start()
    try:
        ready.wait()
    except threading.BrokenBarrierError:
        pass
    t0 = time.perf_counter()
    go.set()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return [x for xs in latencies for x in xs], wall, last[0]


def stats(path: str, clients: int, ms: list[float], wall: float, names: list[str]) -> dict:
    return {"path": path, "clients": clients, "calls": len(ms), "p50_ms": sig(percentile(ms, 0.5), 3),
            "p95_ms": sig(percentile(ms, 0.95), 3), "photos_per_s": sig(len(ms) / wall, 3), "names": names}


def run(args: argparse.Namespace) -> Result:
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # before FAISS loads; the services get the same
    import cv2

    cv2.setNumThreads(args.threads)
    from iznet.client import GatewayClient
    from iznet.pipeline import Pipeline
    from services.stack import Stack, StackConfig

    res = Result(NAME, TITLE)
    client_counts = [int(c) for c in args.clients.split(",")]
    root = Path(tempfile.mkdtemp(prefix="iznet-bench-"))
    try:
        store, photo, what = build_store(root, args.photo, args.threads)
        local, remote = {}, {}
        for c in client_counts:
            def make_local():
                pipe = Pipeline.from_store(store, "default", threads=args.threads)
                return lambda: pipe.label(photo)

            ms, wall, ans = hammer(make_local, c, args.repeats)
            local[c] = res.row(**stats("in-process", c, ms, wall, [f.name for f in ans.faces]))
            print(f"in-process, {c} client(s): {local[c]}", flush=True)
        probe = Pipeline.from_store(store, "default", threads=args.threads)
        local_stages = probe.label(photo).timings
        engines = (f"detector {probe.detector.version['name']} ({getattr(probe.detector, 'backend', '?')}), "
                   f"embedder {probe.embedder.version['name']} ({getattr(probe.embedder, 'backend', '?')})")

        t0 = time.perf_counter()
        stack = Stack(StackConfig(store=store)).start()  # the gallery's models, one thread per service
        startup_s = time.perf_counter() - t0
        channels: list[GatewayClient] = []
        try:
            def make_remote():
                gw = GatewayClient(stack.gateway)
                channels.append(gw)
                return lambda: gw.label(photo)

            for c in client_counts:
                ms, wall, ans = hammer(make_remote, c, args.repeats)
                remote[c] = res.row(**stats("gateway", c, ms, wall, ans.names))
                print(f"gateway, {c} client(s): {remote[c]}", flush=True)
            with GatewayClient(stack.gateway) as gw:
                remote_stages = [gw.label(photo).timings_ms for _ in range(5)]
        finally:
            for gw in channels:
                gw.close()
            stack.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)

    for c in client_counts:
        label = f"Label, {c} client{'s' if c > 1 else ''}"
        res.compare(label, "p50 ms", "in-process", "gateway", local[c]["p50_ms"], remote[c]["p50_ms"], "lower")
        res.compare(label, "p95 ms", "in-process", "gateway", local[c]["p95_ms"], remote[c]["p95_ms"], "lower")
        res.compare(label, "photos/s", "in-process", "gateway", local[c]["photos_per_s"], remote[c]["photos_per_s"])
    res.params.update(what=what, stack_startup_s=round(startup_s, 1), threads_per_process=args.threads,
                      in_process_engines=engines, batch_wait_ms=0.0)
    res.notes.append(f"{what}; {engines}; {args.threads} thread(s) per process (in-process and each service); "
                     f"stack started in {startup_s:.0f} s; same names on both paths: "
                     f"{all(local[c]['names'] == remote[c]['names'] for c in client_counts)}.")
    res.notes.append(overhead_note(local_stages, remote_stages, local[client_counts[0]]["p50_ms"],
                                   remote[client_counts[0]]["p50_ms"]))
    return res


def overhead_note(local_stages: dict, remote_stages: list[dict], local_p50: float, remote_p50: float) -> str:
    """Where the gateway's extra time goes, from the stage timings the gateway and the services report."""
    def med(key: str) -> float:
        return statistics.median([s.get(key, 0.0) for s in remote_stages])

    det_work = sum(med(f"detection.{k}") for k in ("decode", "locate", "encode"))
    parts = {
        "in-process stages": ", ".join(f"{k} {local_stages.get(k, 0.0):.1f}" for k in ("decode", "locate",
                                                                                    "identify")),
        "gateway extra (p50)": f"{remote_p50 - local_p50:.1f}",
        "client<->ingress<->replica": f"{remote_p50 - med('total'):.1f}",
        "detection call wire + (de)serialise": f"{med('detect') - det_work:.1f}",
        "detection service work": f"{det_work:.1f}",
        "embed call (incl. batching window)": f"{med('embed'):.1f}",
        "search call": f"{med('search'):.1f}",
    }
    return "ms, 1 client: " + "; ".join(f"{k}: {v}" for k, v in parts.items())


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photo", type=Path, default=None, help="Photo to label (default: see above).")
    ap.add_argument("--repeats", type=int, default=30, help="Timed calls per client (after 3 warm-up calls).")
    ap.add_argument("--clients", default="1,4", help="Numbers of concurrent clients, comma-separated.")
    ap.add_argument("--threads", type=int, default=1,
                    help="Threads OpenCV/FAISS/torch may use, in this process as in the services (default 1, "
                         "what `iznet up` gives each service).")
    add_json_option(ap)
    return ap


def main(argv: list[str] | None = None) -> Result:
    return main_with_result(run, parser(), argv, NAME, TITLE)


if __name__ == "__main__":
    main()
