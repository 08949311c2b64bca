"""Embeddings per second through the three backends, side by side in one run: torch (in-process), onnx
(onnxruntime in-process) and triton (a real tritonserver from the pytriton venv on loopback, python backend
over onnxruntime, gRPC via tritonclient), by batch size (1, 8, 32), with ratios to torch and the largest
difference from torch's vectors. Without the Triton venv (`make triton-venv`) its rows say "skipped".

    python -m bench.embedding_backends                       # a fresh `small` 64px net (speed needs no training)
    python -m bench.embedding_backends --model runs/small --batches 1,8,32 --seconds 5

Every backend gets the same CPU threads (``--threads``, default 1) and the same BGR face crops (generated,
``--crop-size`` px, resized to the network's input inside ``embed``: what the embedding service calls).
Rounds are interleaved (torch, onnx, triton, torch, ...) and the median round is reported, so load from other
processes on a shared machine hits every backend alike. ``--json PATH`` writes the result (bench/common.py).
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

import numpy as np

from bench.common import Result, Skip, add_json_option, main_with_result, sig

NAME, TITLE = "embedding_backends", "Embedding throughput by backend and batch size"


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


def run(args: argparse.Namespace) -> Result:
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    from iznet.embedding.backends import make_backend
    from iznet.triton.repository import ServingOptions, export_to_store
    from services.triton_local import TritonServer, triton_venv_dir, venv_ready

    torch.set_num_threads(args.threads)
    res = Result(NAME, TITLE)
    batches = [int(b) for b in args.batches.split(",")]
    names = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(names) - {"torch", "onnx", "triton"}
    if unknown:
        raise SystemExit(f"unknown backend(s) {', '.join(sorted(unknown))}: choose from torch, onnx, triton")
    skipped = {}
    if "triton" in names and not venv_ready():  # installing it is `make triton-venv`'s job, not the bench's
        skipped["triton"] = f"no tritonserver venv at {triton_venv_dir()} (run `make triton-venv`)"
    work = Path(tempfile.mkdtemp(prefix="iznet-bench-"))
    model = Path(args.model) if args.model else fresh_model(work / "model", args.network, args.input_size, args.width)
    t0 = time.perf_counter()
    opts = ServingOptions(max_batch_size=max(64, max(batches)), onnx_threads=args.threads, cpu_instances=1)
    export = export_to_store(model, work / "store", name="bench", opts=opts, threads=args.threads)
    card = export["card"]
    print(f"exported in {time.perf_counter() - t0:.1f}s: {card['architecture']}, "
          f"{card['input_size']}px, max |torch-onnx| {export['check']['max_abs_diff']:.1e}", flush=True)

    server = None
    backends = {}
    try:
        for name in names:
            if name in skipped:
                continue
            if name == "torch":
                backends[name] = make_backend("torch", model, threads=args.threads)
            elif name == "onnx":
                backends[name] = make_backend("onnx", export["onnx"], threads=args.threads)
            elif name == "triton":
                t1 = time.perf_counter()
                server = TritonServer(work / "store" / "triton", model_control_mode="none").start(timeout=300)
                print(f"tritonserver ready in {time.perf_counter() - t1:.1f}s at {server.grpc_url}", flush=True)
                backends[name] = make_backend("triton", triton_url=server.grpc_url, triton_model="bench")
        if not backends:
            raise Skip("; ".join(f"{n}: {r}" for n, r in skipped.items()))
        base = next(iter(backends))
        for b in batches:
            crops = faces(b, args.crop_size, seed=b)
            ref = backends[base].embed(crops)
            diffs = {n: float(np.abs(e.embed(crops) - ref).max()) for n, e in backends.items()}  # also warms up
            rates: dict[str, list[float]] = {n: [] for n in backends}
            for _ in range(args.rounds):  # interleaved, so load from other processes hits every backend alike
                for n, e in backends.items():
                    rates[n].append(time_round(e, crops, args.seconds))
            for n in names:
                if n in skipped:
                    res.row(backend=n, batch=b, status=f"skipped: {skipped[n]}")
                    continue
                med = statistics.median(rates[n])
                res.row(backend=n, batch=b, status="ok", emb_per_s=sig(med, 3), ms_per_call=sig(1000 * b / med, 3),
                        rounds=[sig(r, 3) for r in rates[n]], **{f"max_abs_diff_vs_{base}": sig(diffs[n], 2)})
                if n != base:
                    res.compare(f"embed, batch {b}", "embeddings/s", base, n, statistics.median(rates[base]), med)
    finally:
        for e in backends.values():
            e.close()
        if server:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    res.params["card"] = {k: card.get(k) for k in ("name", "architecture", "input_size")}
    res.notes.append(f"median of {args.rounds} interleaved rounds of {args.seconds} s, {args.threads} thread(s), "
                     f"{card['input_size']}px {card['architecture'].get('name')}, flip TTA on; "
                     f"{'a fresh untrained' if not args.model else 'the given'} model (speed needs no training).")
    return res


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="A trained embedder dir (model.pt + model.json) [a fresh net].")
    ap.add_argument("--network", default="small", help="Network of the fresh net. [small]")
    ap.add_argument("--input-size", type=int, default=None, help="Input side of the fresh net [its default].")
    ap.add_argument("--width", type=float, default=1.0, help="Channel multiplier of the fresh net. [1.0]")
    ap.add_argument("--batches", default="1,8,32", help="Batch sizes. [1,8,32]")
    ap.add_argument("--crop-size", type=int, default=112, help="Side of the generated face crops. [112]")
    ap.add_argument("--seconds", type=float, default=2.0, help="Seconds per timed round. [2]")
    ap.add_argument("--rounds", type=int, default=3, help="Interleaved rounds per (backend, batch). [3]")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads for every backend. [1]")
    ap.add_argument("--backends", default="torch,onnx,triton", help="Which backends; the first is the baseline.")
    add_json_option(ap)
    return ap


def main(argv: list[str] | None = None) -> Result:
    return main_with_result(run, parser(), argv, NAME, TITLE)


if __name__ == "__main__":
    main()
