"""Embeddings per second through the three backends, side by side in one run: torch (in-process), onnx
(onnxruntime in-process) and triton (a real tritonserver from the pytriton venv on loopback, python backend
over onnxruntime, gRPC via tritonclient), at batch 1 and 32, with ratios to torch and the largest difference
from torch's vectors.

    python -m bench.embedding_backends                       # a fresh `small` 64px net (speed needs no training)
    python -m bench.embedding_backends --model runs/small --batches 1,8,32 --seconds 5

Every backend gets the same CPU threads (``--threads``, default 1) and the same BGR face crops (generated,
``--crop-size`` px, resized to the network's input inside ``embed``: what the embedding service calls).
Rounds are interleaved (torch, onnx, triton, torch, ...) and the median round is reported, so load from other
processes on a shared machine hits every backend alike. Results: bench/results/embedding_backends.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def fresh_model(out: Path, network: str, input_size: int | None, width: float) -> Path:
    """A model dir in the trained format with untrained weights (BN statistics from generated faces)."""
    import torch

    from iznet.embedding.networks import create_network
    from iznet.embedding.preprocess import Preprocess, prepare

    torch.manual_seed(0)
    kw = {"width": width} | ({"input_size": input_size} if input_size else {})
    net = create_network(network, **kw)
    pp = Preprocess(input_size=net.arch["input_size"], crop_fraction=0.9)
    net.train()
    with torch.no_grad():
        net(prepare(faces(16, 112, seed=1), pp))
    net.eval()
    out.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), out / "model.pt")
    card = {"kind": "embedder", "name": f"{network}-bench", "version": "untrained", "architecture": net.arch,
            "preprocess": pp.to_dict() | {"flip_tta": True}}
    (out / "model.json").write_text(json.dumps(card))
    return out


def faces(n: int, size: int, seed: int = 0) -> list[np.ndarray]:
    from iznet.synthetic import draw_face, make_person

    rng = np.random.default_rng(seed)
    people = [make_person(rng, f"p{i}") for i in range(8)]
    return [draw_face(people[i % 8], rng, size=size) for i in range(n)]


def time_round(emb, crops: list[np.ndarray], seconds: float) -> float:
    """Embeddings per second over at least ``seconds`` (and at least 3 calls)."""
    calls, t0 = 0, time.perf_counter()
    while True:
        emb.embed(crops)
        calls += 1
        dt = time.perf_counter() - t0
        if dt >= seconds and calls >= 3:
            return calls * len(crops) / dt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="A trained embedder dir (model.pt + model.json) [a fresh net].")
    ap.add_argument("--network", default="small", help="Network of the fresh net. [small]")
    ap.add_argument("--input-size", type=int, default=None, help="Input side of the fresh net [its default].")
    ap.add_argument("--width", type=float, default=1.0, help="Channel multiplier of the fresh net. [1.0]")
    ap.add_argument("--batches", default="1,32", help="Batch sizes. [1,32]")
    ap.add_argument("--crop-size", type=int, default=112, help="Side of the generated face crops. [112]")
    ap.add_argument("--seconds", type=float, default=2.0, help="Seconds per timed round. [2]")
    ap.add_argument("--rounds", type=int, default=3, help="Interleaved rounds per (backend, batch). [3]")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads for every backend. [1]")
    ap.add_argument("--backends", default="torch,onnx,triton", help="Which backends. [torch,onnx,triton]")
    ap.add_argument("--out", default="bench/results/embedding_backends.json", help="JSON results.")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    import torch

    from iznet.embedding.backends import make_backend
    from iznet.triton.repository import ServingOptions, export_to_store
    from services.triton_local import TritonServer, setup_venv

    torch.set_num_threads(args.threads)
    batches = [int(b) for b in args.batches.split(",")]
    names = [b.strip() for b in args.backends.split(",") if b.strip()]
    work = Path(tempfile.mkdtemp(prefix="iznet-bench-"))
    model = Path(args.model) if args.model else fresh_model(work / "model", args.network, args.input_size, args.width)
    t0 = time.perf_counter()
    opts = ServingOptions(max_batch_size=max(64, max(batches)), onnx_threads=args.threads, cpu_instances=1)
    export = export_to_store(model, work / "store", name="bench", opts=opts, threads=args.threads)
    print(f"exported in {time.perf_counter() - t0:.1f}s: {export['card']['architecture']}, "
          f"{export['card']['input_size']}px, max |torch-onnx| {export['check']['max_abs_diff']:.1e}")

    server = None
    backends = {}
    try:
        for name in names:
            if name == "torch":
                backends[name] = make_backend("torch", model, threads=args.threads)
            elif name == "onnx":
                backends[name] = make_backend("onnx", export["onnx"], threads=args.threads)
            elif name == "triton":
                setup_venv()
                t1 = time.perf_counter()
                server = TritonServer(work / "store" / "triton", model_control_mode="none").start(timeout=300)
                print(f"tritonserver ready in {time.perf_counter() - t1:.1f}s at {server.grpc_url}")
                backends[name] = make_backend("triton", triton_url=server.grpc_url, triton_model="bench")
            else:
                raise SystemExit(f"unknown backend {name!r}")
        rows = []
        for b in batches:
            crops = faces(b, args.crop_size, seed=b)
            ref = backends[names[0]].embed(crops)
            diffs = {n: float(np.abs(e.embed(crops) - ref).max()) for n, e in backends.items()}  # also warms up
            rates: dict[str, list[float]] = {n: [] for n in backends}
            for _ in range(args.rounds):
                for n, e in backends.items():
                    rates[n].append(time_round(e, crops, args.seconds))
            for n in backends:
                med = statistics.median(rates[n])
                rows.append({"backend": n, "batch": b, "emb_per_s": round(med, 1),
                             "ms_per_call": round(1000 * b / med, 2), "rounds": [round(r, 1) for r in rates[n]],
                             f"max_abs_diff_vs_{names[0]}": diffs[n]})
        for r in rows:
            base = next(x for x in rows if x["batch"] == r["batch"] and x["backend"] == names[0])
            r[f"ratio_vs_{names[0]}"] = round(r["emb_per_s"] / base["emb_per_s"], 2)
    finally:
        for e in backends.values():
            e.close()
        if server:
            server.stop()

    print(f"\nembeddings/s, median of {args.rounds} interleaved rounds of {args.seconds}s, {args.threads} thread(s), "
          f"{export['card']['input_size']}px {export['card']['architecture'].get('name')}, flip TTA on:")
    print(f"| backend | batch | emb/s | ms/call | vs {names[0]} | max abs diff vs {names[0]} |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['backend']} | {r['batch']} | {r['emb_per_s']:.1f} | {r['ms_per_call']:.2f} | "
              f"{r[f'ratio_vs_{names[0]}']:.2f}x | {r[f'max_abs_diff_vs_{names[0]}']:.1e} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "card": export["card"], "rows": rows,
                               "load_avg": os.getloadavg(), "cpus": os.cpu_count(),
                               "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, indent=2))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
