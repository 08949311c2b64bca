"""``iznet detect``: pseudo-label photos, train the YOLO-style detector, evaluate it against the teachers, run it."""

from __future__ import annotations

import json
from pathlib import Path

import click

from iznet.errors import NotFoundError, UserInputError
from iznet.registry import detector_help

TEACHER_HELP = "haar, ultralight-320, ultralight-640, or a path to an Ultra-Light .onnx model"
DETECTOR_HELP = detector_help()


def _set_threads(threads: int) -> None:
    import cv2
    import torch

    torch.set_num_threads(max(1, threads))
    cv2.setNumThreads(1)


def _make_detector(spec: str, threads: int, conf: float | None, input_size: int | None):
    """Any detector the registry knows (``iznet models list``), with this command's knobs where they apply."""
    from iznet.registry import DEFAULT_DETECTOR, DEFAULT_NAMES, create_detector, detector_threads

    name = DEFAULT_DETECTOR if spec in DEFAULT_NAMES else spec
    kwargs: dict = detector_threads(name, threads)
    if name.startswith("ultralight-") or name.endswith(".onnx"):
        if conf is not None:
            kwargs["score_threshold"] = conf
    elif name not in ("mtcnn", "haar"):
        kwargs.update(conf_threshold=conf, input_size=input_size)
    return create_detector(spec, **kwargs)


@click.group()
def detect() -> None:
    """Face detection: teachers, the trained YOLO-style detector, training and evaluation."""


@detect.command("label")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="JSON file to write (resumable).")
@click.option("--teacher", default="ultralight-640", show_default=True, help=f"Teacher detector: {TEACHER_HELP}.")
@click.option("--limit", type=int, default=None, help="Label only the first N images (sorted by path).")
@click.option("--threads", type=int, default=1, show_default=True, help="CPU threads for the teacher.")
def label_cmd(folder: Path, out: Path, teacher: str, limit: int | None, threads: int) -> None:
    """Pseudo-label every photo under FOLDER with a teacher detector (boxes cached as JSON)."""
    from training.detection.pseudo_labels import label_folder

    _set_threads(threads)
    t = _make_detector(teacher, threads, None, None)
    cache = label_folder(t, folder, out, limit=limit)
    n_faces = sum(len(v) for v in cache["images"].values())
    click.echo(f"{len(cache['images'])} images, {n_faces} faces -> {out}")


@detect.command("train")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Weights file to write (NAME.pt; the card NAME.json and log NAME.log.jsonl go beside it).")
@click.option("--size", default="cpu", show_default=True, help="Model size from the registry: nano, cpu, darknet53.")
@click.option("--labels-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/detection"),
              show_default=True, help="Where the pseudo-label JSON files are (made with `iznet detect label`).")
@click.option("--data", "data_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The shared data folder (default: $IZNET_SHARED_DATA or ../shared/data).")
@click.option("--img-size", type=int, default=256, show_default=True, help="Side of the square training samples.")
@click.option("--batch", type=int, default=16, show_default=True, help="Samples per step.")
@click.option("--steps", type=int, default=3000, show_default=True, help="Step budget (the LR schedule spans it).")
@click.option("--minutes", type=float, default=0.0, show_default=True,
              help="Time budget in minutes; the schedule follows whichever budget is used up first (0 = none).")
@click.option("--lr", type=float, default=2e-3, show_default=True, help="Peak AdamW learning rate.")
@click.option("--warmup", type=int, default=100, show_default=True, help="Steps of linear learning-rate warm-up.")
@click.option("--anchors-per-scale", type=int, default=3, show_default=True, help="Anchors at each of the 3 scales.")
@click.option("--gray-p", type=float, default=0.5, show_default=True, help="Share of samples turned grayscale.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for sampling and initialisation.")
@click.option("--threads", type=int, default=1, show_default=True, help="Torch CPU threads (the machine is shared).")
@click.option("--workers", type=int, default=1, show_default=True, help="Data-synthesis worker processes (0 = inline).")
@click.option("--input-size", type=int, default=416, show_default=True,
              help="Inference size written into the card (the study's 416; see docs/detection.md for 320-960).")
@click.option("--init", "init", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Continue from a saved detector (.pt with its card): its weights and anchors.")
@click.option("--no-pseudo", is_flag=True, help="Train without the pseudo-labelled photos (composites of the PASCAL boxes only).")
@click.option("--resume/--no-resume", default=True, show_default=True,
              help="Continue the run saved beside --out (OUT.state.pt) when there is one.")
@click.option("--device", default="auto", show_default=True, help="auto (a GPU when torch sees one), cpu or cuda.")
@click.option("--labels-teacher", default="mtcnn", show_default=True,
              help="Whose pseudo-labels to train on (LABELS_DIR/pseudo_<lfw|groups>_<teacher>.json); MTCNN's "
                   "carry five landmarks, and with them the detector gets its landmark head.")
def train_cmd(out, size, labels_dir, data_dir, img_size, batch, steps, minutes, lr, warmup, anchors_per_scale, gray_p, seed,
              threads, workers, input_size, init, no_pseudo, resume, device, labels_teacher) -> None:
    """Train the YOLO-style detector on pseudo-labelled photos, composites and the dlib PASCAL training boxes."""
    from iznet.config import shared_data_dir
    from training.detection.train import TrainConfig, default_sources, train

    shared = data_dir or shared_data_dir()
    if not shared.is_dir():
        raise NotFoundError(f"shared data folder {shared} not found (set --data or IZNET_SHARED_DATA)")
    sources = default_sources(shared, labels_dir, labels_teacher)
    if no_pseudo:
        sources["pseudo"] = []
    else:
        missing = [s["labels"] for s in sources["pseudo"] if not Path(s["labels"]).is_file()]
        if missing:
            raise NotFoundError(
                "pseudo-labels missing: " + ", ".join(missing)
                + f" (make them with `iznet detect label {shared}/lfw --teacher {labels_teacher} "
                f"--out {labels_dir}/pseudo_lfw_{labels_teacher}.json`)"
            )
    cfg = TrainConfig(out=out, size=size, img_size=img_size, batch=batch, steps=steps, minutes=minutes, lr=lr, warmup=warmup,
                      num_anchors=anchors_per_scale, gray_p=gray_p, seed=seed, threads=threads, workers=workers,
                      input_size=input_size, sources=sources, init=str(init) if init else "", resume=resume,
                      device=device)
    path = train(cfg)
    click.echo(f"detector -> {path} (card {path.with_suffix('.json')})")


@detect.command("eval")
@click.option("--detector", "detectors", multiple=True, required=True,
              help=f"Any detector ({DETECTOR_HELP}); repeat to compare.")
@click.option("--teachers/--no-teachers", default=True, show_default=True,
              help="Also run mtcnn, haar, ultralight-320 and ultralight-640 in the same run.")
@click.option("--data", "data_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The shared data folder (default: $IZNET_SHARED_DATA or ../shared/data).")
@click.option("--conf", type=float, default=0.05, show_default=True,
              help="Score threshold for every detector except Haar (low, so AP sees the whole ranking).")
@click.option("--input-size", type=int, default=None, help="Inference size of the trained detectors (default: card).")
@click.option("--threads", type=int, default=1, show_default=True, help="CPU threads for every detector.")
@click.option("--json-out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Also write the results as JSON.")
def eval_cmd(detectors, teachers, data_dir, conf, input_size, threads, json_out) -> None:
    """VOC AP@0.5 and AP@0.3 on CMU+MIT (head and inner-face boxes) and the dlib PASCAL test set, side by side."""
    from dataclasses import asdict

    from iznet.config import shared_data_dir
    from iznet.detection.evaluate import benchmark, format_table, load_cmu_mit, load_imglab_xml
    from iznet.detection.teachers import TEACHERS

    _set_threads(threads)
    shared = data_dir or shared_data_dir()
    root = shared / "detection"
    if not root.is_dir():
        raise NotFoundError(f"{root} not found: the benchmarks live in the shared data folder (set --data)")
    datasets = [
        load_cmu_mit(root / "cmu_mit_frontal", "head"),
        load_cmu_mit(root / "cmu_mit_frontal", "face"),
        load_imglab_xml(root / "dlib_pascal_faces" / "testing.xml", "pascal_test"),
    ]
    from iznet.registry import DEFAULT_DETECTOR, DEFAULT_NAMES

    chosen = [DEFAULT_DETECTOR if d in DEFAULT_NAMES else d for d in detectors]
    specs = chosen + ([t for t in ("mtcnn", *TEACHERS) if t not in chosen] if teachers else [])
    dets = [_make_detector(s, threads, conf, input_size) for s in specs]
    names = [d.name for d in dets]
    if len(set(names)) != len(names):
        raise UserInputError(f"two detectors share a name: {names}")
    results = benchmark(dets, datasets)
    click.echo(format_table(results))
    click.echo(f"(score threshold {conf} for all but haar; ms/640x480 = one image resized to 640x480, {threads} thread(s))")
    if json_out:
        json_out.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")


@detect.command("run")
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--detector", "spec", required=True, help=f"Any detector ({DETECTOR_HELP}).")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("detect-out"), show_default=True,
              help="Where the annotated copies go (same file names).")
@click.option("--conf", type=float, default=None, help="Score threshold (default: the card's / the teacher's).")
@click.option("--input-size", type=int, default=None, help="Inference size of a trained detector (default: card).")
@click.option("--threads", type=int, default=1, show_default=True, help="CPU threads.")
def run_cmd(images, spec, out_dir, conf, input_size, threads) -> None:
    """Detect faces in IMAGES, draw the boxes in red, print them as JSON lines."""
    import cv2

    from iznet.detection.draw import draw_boxes
    from iznet.imageio import read_image

    _set_threads(threads)
    det = _make_detector(spec, threads, conf, input_size)
    out_dir.mkdir(parents=True, exist_ok=True)
    for p in images:
        im = read_image(p)
        faces = det.detect(im)
        out = out_dir / p.name
        if not cv2.imwrite(str(out), draw_boxes(im, faces)):
            raise UserInputError(f"cannot write {out}")
        click.echo(json.dumps({"image": str(p), "annotated": str(out), "detector": det.name,
                               "faces": [{"box": f.as_list(), "score": round(f.score, 4)} for f in faces]}))
