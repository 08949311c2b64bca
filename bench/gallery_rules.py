"""Which decision rule names people best: nearest exemplar, k-NN vote or per-person centroid, side by side.

    python -m bench.gallery_rules --folder ../shared/data/att_orl [--dataset faces/] [--model baseline-lbp] [--json PATH]

Open-set protocol on dev data (one sub-folder of photos per person, detected and aligned as enrollment does,
or the aligned crops of a built dataset): a third of the people are *not* enrolled; every enrolled person gets
``--exemplars`` exemplars and the rest of their photos are probes, as are all photos of the people not
enrolled. Per rule: rank-1 accuracy on enrolled people's probes (no threshold), and the open-set
detection-and-identification rate (enrolled probes named correctly) at the threshold where ``--fa`` of the
strangers' probes are wrongly named. Averaged over ``--repeats`` random splits.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from bench.common import Result, Skip, add_json_option, main_with_result

NAME, TITLE = "gallery_rules", "Gallery decision rules: nearest exemplar vs k-NN vote vs centroid"


def load_folder(path: Path, pipe, per_person: int) -> tuple[list[np.ndarray], list[str]]:
    from iznet.data.align import choose_face
    from iznet.detection.find import detect_faces
    from iznet.errors import IZNetError
    from iznet.imageio import IMAGE_SUFFIXES, read_image

    crops, labels = [], []
    for person in sorted(p for p in path.iterdir() if p.is_dir()):
        files = [f for f in sorted(person.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES][:per_person]
        for f in files:
            try:
                im = read_image(f)
            except IZNetError:
                continue
            faces, _ = detect_faces(pipe.detector, im, pipe.min_face)
            if faces:
                c = choose_face(faces, im.shape[1], im.shape[0])
                crops.append(pipe.align_one(im, faces[c.index])[0])
                labels.append(f"{path.name}:{person.name}")
    return crops, labels


def load_dataset(path: Path, min_images: int, per_person: int) -> tuple[list[np.ndarray], list[str]]:
    from collections import defaultdict

    from iznet.data.dataset import FaceDataset
    from iznet.imageio import read_image

    ds = FaceDataset(path)
    by = defaultdict(list)
    for r in ds.faces():
        by[r.identity].append(r)
    crops, labels = [], []
    for ident, recs in sorted(by.items()):
        if len(recs) >= min_images:
            for r in recs[:per_person]:
                crops.append(read_image(r.path))
                labels.append(f"{path.name}:{ident}")
    return crops, labels


def evaluate(vecs: np.ndarray, labels: np.ndarray, exemplars: int, fa: float, repeats: int, seed: int, k: int,
             model: dict) -> dict[str, dict[str, float]]:
    from iznet.gallery.gallery import RULES, Gallery

    rng = np.random.default_rng(seed)
    people = np.array(sorted(set(labels)))
    counts = {p: int(np.sum(labels == p)) for p in people}
    eligible = np.array([p for p in people if counts[p] > exemplars])
    out: dict[str, list[tuple[float, float]]] = {r: [] for r in RULES}
    for _ in range(repeats):
        strangers = set(rng.choice(eligible, size=len(eligible) // 3, replace=False))
        g = Gallery("bench", model, k=k)
        known_q, known_lab, stranger_q = [], [], []
        for p in eligible:
            rows = rng.permutation(np.flatnonzero(labels == p))
            if p in strangers:
                stranger_q.extend(rows)
            else:
                g.add_exemplars(p, vecs[rows[:exemplars]])
                known_q.extend(rows[exemplars:])
                known_lab.extend([p] * (len(rows) - exemplars))
        known_lab = np.array(known_lab)
        for rule in RULES:
            mk = g.search(vecs[known_q], rule=rule, threshold=-1.0)
            ms = g.search(vecs[stranger_q], rule=rule, threshold=-1.0)
            names = np.array([m.nearest for m in mk])
            sk = np.array([m.score for m in mk])
            ss = np.sort(np.array([m.score for m in ms]))[::-1]
            thr = ss[int(np.floor(fa * len(ss)))] + 1e-7 if len(ss) else -1.0
            rank1 = float(np.mean(names == known_lab))
            dir_ = float(np.mean((names == known_lab) & (sk >= thr)))
            out[rule].append((rank1, dir_))
    return {r: {"rank1": round(float(np.mean([a for a, _ in v])), 4),
                f"dir_at_fa{fa:g}": round(float(np.mean([b for _, b in v])), 4)} for r, v in out.items()}


def run(args: argparse.Namespace) -> Result:
    from iznet.registry import create_embedder
    from iznet.gallery.gallery import RULES
    from iznet.pipeline import Pipeline
    from iznet.registry import create_detector

    sources = [("folder", Path(f)) for f in args.folder] + [("dataset", Path(d)) for d in args.dataset]
    if not sources:
        raise Skip("no --folder or --dataset given (e.g. --folder ../shared/data/att_orl)")
    missing = [str(p) for _, p in sources if not p.is_dir()]
    if missing:
        raise Skip(f"not found: {', '.join(missing)}")
    res = Result(NAME, TITLE)
    emb = create_embedder(args.model)
    pipe = Pipeline(create_detector(args.detector), emb, None)
    for kind, path in sources:
        t0 = time.perf_counter()
        if kind == "folder":
            crops, labels = load_folder(path, pipe, args.per_person)
        else:
            crops, labels = load_dataset(path, args.min_images, args.per_person)
        vecs = emb.embed(crops)
        scores = evaluate(vecs, np.array(labels), args.exemplars, args.fa, args.repeats, args.seed, args.k, emb.version)
        n_people = len(set(labels))
        print(f"{path} ({len(crops)} faces, {n_people} people, {time.perf_counter() - t0:.0f}s)", flush=True)
        for rule, r in scores.items():
            res.row(source=path.name, faces=len(crops), people=n_people, rule=rule, **r)
        dir_key = f"dir_at_fa{args.fa:g}"
        for rule in RULES[1:]:
            res.compare(f"name people, {path.name}", "rank-1", RULES[0], rule, scores[RULES[0]]["rank1"],
                        scores[rule]["rank1"])
            res.compare(f"name people, {path.name}", f"DIR at FA {args.fa:g}", RULES[0], rule,
                        scores[RULES[0]][dir_key], scores[rule][dir_key])
    res.notes.append(f"model {args.model}, detector {args.detector}, {args.exemplars} exemplars per enrolled person, "
                     f"a third of the people are strangers; mean of {args.repeats} random splits.")
    return res


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folder", action="append", default=[], help="photos, one sub-folder per person")
    ap.add_argument("--dataset", action="append", default=[], help="a dataset built by `iznet data build`")
    ap.add_argument("--model", default="baseline-lbp")
    ap.add_argument("--detector", default="haar")
    ap.add_argument("--exemplars", type=int, default=3, help="exemplars enrolled per person")
    ap.add_argument("--min-images", type=int, default=5, help="(datasets) people with at least this many crops")
    ap.add_argument("--per-person", type=int, default=20, help="at most this many photos per person")
    ap.add_argument("--fa", type=float, default=0.05, help="share of strangers' probes allowed to be named")
    ap.add_argument("--k", type=int, default=5, help="neighbours for the k-NN vote")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    add_json_option(ap)
    return ap


def main(argv: list[str] | None = None) -> Result:
    return main_with_result(run, parser(), argv, NAME, TITLE)


if __name__ == "__main__":
    main()
