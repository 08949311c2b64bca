"""The demo: the whole system on one machine, end to end, with progress shown at every stage.

    photos -> face dataset -> a trained embedder -> a gallery (unknown threshold from the dataset's dev pairs)
    -> the local stack (detection, embedding and gallery services + the Ray Serve gateway, on loopback)
    -> a group photo labelled over gRPC -> the annotated photo, its JSON answer and the analysis report in OUT

Where the photos come from (:func:`pick_source`): the user's folder (one sub-folder per person); else the team's
shared photos (LFW to train on, the ``face_recognition_knn`` people to enroll, their group photos to label);
else generated people and group photos of them (:mod:`iznet.synthetic`). Every stage is a call into the
library (builder, trainer, gallery, stack, client, analysis); this module only orders them and reports.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import click

from iznet.config import shared_data_dir
from iznet.errors import PreconditionError, UserInputError

STAGES = 7
GALLERY = "demo"
#: The unknown threshold's target false-accept rate per comparison (see iznet.gallery.calibrate).
FAR = 1e-2

# The embedder the demo trains: the one place to switch it. `hog` is fixed HOG features + a learned projection:
# it trains in a minute on a CPU. (`hog_lbp`, the LFW recipe, named fewer generated faces right: LBP texture
# of flat cartoon skin says little about who it is.)
EMBEDDER = {"network": "hog", "method": "softmax", "input_size": 64, "optimizer": "adam", "lr": 1e-3,
            "weight_decay": 1e-4, "batch_size": 64, "warmup_steps": 30, "schedule": "cosine",
            "margin_kind": "cosface", "scale": 30.0, "margin": 0.35}


@dataclass(frozen=True)
class DemoSize:
    """How big the demo runs: the full one shows every stage properly in about ten minutes on 2 cores; the
    quick one is for tests and CI."""

    people: int           # generated people
    photos: int           # generated photos of each
    lfw_people: int       # shared data: train on the LFW people with the most photos, at most this many
    lfw_photos: int       # ... and at most this many photos of each
    train_steps: int
    train_minutes: float  # wall-clock cap on training
    tsne_iterations: int


# The full demo's training stops at its time budget on a slow machine; the quick one always runs its steps
# (the same model whatever the load: the test relies on it), its time cap only a safety.
SIZES = {
    "full": DemoSize(people=16, photos=12, lfw_people=300, lfw_photos=20, train_steps=1500, train_minutes=4.0,
                     tsne_iterations=1000),
    "quick": DemoSize(people=10, photos=8, lfw_people=40, lfw_photos=5, train_steps=250, train_minutes=30.0,
                      tsne_iterations=300),
}


@dataclass
class DemoSource:
    """The demo's input: photos to build the training dataset from, people to enroll, photos to label."""

    what: str                       # where it came from, said to the user
    train_photos: Path              # <person>/<photo>: the face dataset (and so the embedder) comes from these
    enroll_photos: Path             # <person>/<photo>: the gallery
    groups: list[Path]              # photos to label; the first is the one the demo shows
    #: per photo (by file name) who is in it, when known: [{"name", "known", and "box" (the face) or "region"
    #: (the part of the photo showing that one person), as [x1, y1, x2, y2], or neither}]
    truth: dict[str, list[dict]] = field(default_factory=dict)
    #: generated people (iznet.synthetic.Person): their group photos are drawn once the dataset is built
    generated: list = field(default_factory=list)
    #: "image" when the people enrolled are the people trained on (your photos, generated ones): the embedder
    #: learns them from some of their photos and is checked on others. "identity" when they are not (LFW):
    #: dev people are then never trained on.
    split_by: str = "image"
    #: Generated cartoon people: the imported models were trained on real faces and do not find or tell
    #: cartoons apart, so the gallery uses the embedder trained here and the Haar detector.
    synthetic: bool = False


def say(stage: int, text: str) -> None:
    click.echo(f"[{stage}/{STAGES}] {text}")


def note(text: str) -> None:
    click.echo(f"      {text}")


# ------------------------------------------------------------------------------------------------ photos


def pick_source(data: Path | None, group: Path | None, out: Path, size: DemoSize) -> DemoSource:
    """The user's photos, the team's shared ones, or generated ones, in that order."""
    if data is not None:
        return user_source(data, group, out)
    shared = shared_data_dir()
    if (shared / "lfw").is_dir() and (shared / "face_recognition_knn" / "train").is_dir():
        return shared_source(shared, group, out, size)
    return generated_source(group, out, size)


def user_source(data: Path, group: Path | None, out: Path) -> DemoSource:
    """Train on DATA and enroll it; label GROUP, or a mosaic of one held-out photo of each of a few people
    (held out of training and of the gallery, so neither has seen those pictures)."""
    from iznet.data.builder import scan_source

    photos = scan_source(data)  # UserInputError for an empty or missing folder
    if group is not None:
        return DemoSource(f"your photos ({data}), labelling {group}", data, data, [group])
    by_person: dict[str, list[Path]] = {}
    for rel, _ident in photos:
        by_person.setdefault(Path(rel).parts[0], []).append(data / rel)
    held = {person: files[-1] for person, files in by_person.items() if len(files) >= 2}
    if not held:
        raise UserInputError(f"{data}: no person has two photos, so none can be held out for the group photo; "
                             "give GROUP=photo.jpg, or two or more photos of some people")
    # The gallery: everyone's photos but the held-out ones (links, not copies).
    enroll = out / "enroll"
    shutil.rmtree(enroll, ignore_errors=True)
    for person, files in by_person.items():
        for f in files:
            if held.get(person) != f:
                link = enroll / f.relative_to(data)
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(f.resolve())
    chosen = dict(list(held.items())[:6])
    mosaic, truth = make_mosaic(chosen, out / "groups" / "mosaic.jpg")
    # Trained on and enrolled without the held-out photos: the mosaic shows pictures neither has seen.
    return DemoSource(f"your photos ({data}); labelling a mosaic of held-out photos of {len(chosen)} people",
                      enroll, enroll, [mosaic], {mosaic.name: truth})


def make_mosaic(photos: dict[str, Path], path: Path, tile: int = 320) -> tuple[Path, list[dict]]:
    """One photo made of ``photos`` (person -> photo) side by side, and who is in which tile."""
    import cv2
    import numpy as np

    from iznet.imageio import read_image, write_image

    cols = min(3, len(photos))
    rows = math.ceil(len(photos) / cols)
    canvas = np.full((rows * tile, cols * tile, 3), 255, np.uint8)
    truth = []
    for k, (person, photo) in enumerate(photos.items()):
        img = read_image(photo)
        s = tile / max(img.shape[:2])
        img = cv2.resize(img, (max(1, round(img.shape[1] * s)), max(1, round(img.shape[0] * s))))
        y, x = (k // cols) * tile, (k % cols) * tile
        canvas[y:y + img.shape[0], x:x + img.shape[1]] = img
        truth.append({"name": person, "known": True, "region": [x, y, x + img.shape[1], y + img.shape[0]]})
    write_image(path, canvas)
    return path, truth


def shared_source(shared: Path, group: Path | None, out: Path, size: DemoSize) -> DemoSource:
    """LFW to train on (the people with the most photos), the face_recognition_knn people to enroll, and
    their group photos to label (obama_and_biden.jpg shows Biden, Obama and a girl nobody enrolled)."""
    lfw = shared / "lfw"
    people = sorted((p for p in lfw.iterdir() if p.is_dir()), key=lambda p: (-len(list(p.iterdir())), p.name))
    subset = out / "lfw-subset"  # links to the chosen photos: the dataset builder reads a folder
    shutil.rmtree(subset, ignore_errors=True)
    for p in people[:size.lfw_people]:
        (subset / p.name).mkdir(parents=True)
        for photo in sorted(p.iterdir())[:size.lfw_photos]:
            (subset / p.name / photo.name).symlink_to(photo.resolve())
    groups_dir = shared / "groups" / "face_recognition"
    groups = [group] if group is not None else [groups_dir / "obama_and_biden.jpg", groups_dir / "two_people.jpg"]
    truth = {"obama_and_biden.jpg": [{"name": "biden", "known": True}, {"name": "obama", "known": True}],
             "two_people.jpg": [{"name": "obama", "known": True}, {"name": "biden", "known": True}]}
    return DemoSource(f"the team's shared photos ({shared}): {min(size.lfw_people, len(people))} LFW people to "
                      f"train on, the face_recognition_knn people to enroll",
                      subset, shared / "face_recognition_knn" / "train", groups, truth, split_by="identity")


def generated_source(group: Path | None, out: Path, size: DemoSize) -> DemoSource:
    """Generated people, and group photos of some of them with a stranger nobody enrolled."""
    from iznet.synthetic import make_people

    photos = out / "photos"
    shutil.rmtree(photos, ignore_errors=True)
    # with neck and shoulders, as the group photos show them (see iznet.synthetic.draw_body)
    people = make_people(photos, people=size.people, photos=size.photos, seed=0, body=True)
    if group is not None:
        return DemoSource(f"{size.people} generated people ({photos}), labelling {group}", photos, photos, [group],
                          synthetic=True)
    return DemoSource(f"{size.people} generated people ({photos}); give DATA=... for real photos",
                      photos, photos, [], generated=people, synthetic=True)


def draw_generated_groups(source: DemoSource, dataset: Path, out: Path) -> None:
    """Group photos of generated people: 4 of the enrolled people and a stranger each.

    Haar finds some cartoon faces far more reliably than others (a limit of the detector, not of the
    recognition), so the group is drawn from the people the builder kept the most photos of."""
    from collections import Counter

    from iznet.data.dataset import FaceDataset
    from iznet.synthetic import make_group_photos

    kept = Counter(r.identity for r in FaceDataset(dataset).faces())
    best = sorted(source.generated, key=lambda p: -kept[p.name])[:6]
    paths = make_group_photos(out / "groups", best, photos=2, per_photo=4, strangers=1, seed=0)
    source.groups = paths
    for p in paths:
        source.truth[p.name] = json.loads(p.with_suffix(".truth.json").read_text())["faces"]


# ------------------------------------------------------------------------------------------------ stages


def build_faces(source: DemoSource, out: Path):
    from iznet.data.builder import BuildConfig, build_dataset

    if source.split_by == "identity":
        # Dev people are never trained on, so the dev pairs calibrate the unknown threshold on strangers.
        people = {Path(p).parts[0] for p in _rels(source.train_photos)}
        ratios = (0.6, 0.2, 0.2) if len(people) >= 15 else (0.5, 0.3, 0.2)
    else:
        # A few photos of each person: enough dev photos per person for same-person pairs; no test split
        # (the group photo is the test).
        ratios = (0.6, 0.4, 0.0)
    cfg = BuildConfig(split_by=source.split_by, ratios=ratios, fallback_center=0.0,
                      **({"teacher": "haar"} if source.synthetic else {}))
    report = build_dataset(source.train_photos, out / "dataset", cfg)  # all cores
    c = report.counts
    note(f"{c['kept']} faces of {report.identities} people kept, {c['skipped']} skipped (no face found, "
         f"unreadable, ...), {c['duplicate']} near-duplicates, in {report.seconds:.0f}s -> {out / 'dataset'}")
    if c["kept"] == 0:
        reasons = "; ".join(f"{n} {r}" for r, n in report.by_reason.items())
        raise UserInputError(f"{source.train_photos}: no face found in any photo ({reasons}); the demo needs "
                             "photos of faces, one sub-folder per person")
    if report.identities < 2:
        raise UserInputError(f"{source.train_photos}: faces of only {report.identities} person; the demo needs "
                             "at least two people to learn to tell faces apart")
    return report


def _rels(folder: Path) -> list[str]:
    from iznet.data.builder import scan_source

    return [rel for rel, _ in scan_source(folder)]


def train_embedder(dataset: Path, out: Path, size: DemoSize) -> tuple[Path, dict]:
    from training.trainer import TrainConfig, Trainer

    dev_pairs = dataset / "pairs_dev.txt"
    cfg = TrainConfig(data=str(dataset), out=str(out / "model"), split="train", **EMBEDDER,
                      steps=size.train_steps, max_minutes=size.train_minutes,
                      dev_pairs=str(dev_pairs) if dev_pairs.is_file() else None,
                      eval_every=max(50, size.train_steps // 5), threads=1, seed=0)
    summary = Trainer(cfg).fit()
    # The best model on dev when there were dev pairs, else the last one.
    model = out / "model" / "best" if (out / "model" / "best" / "model.pt").is_file() else out / "model"
    return model, summary


def gallery_models(source: DemoSource, trained: Path) -> tuple[str, str]:
    """(embedder, detector) the gallery is built with: the defaults (dlib's ResNet and MTCNN) on real photos;
    on generated cartoon people, which neither was trained on, the embedder trained here and Haar."""
    return (str(trained), "haar") if source.synthetic else ("default", "default")


def enroll_gallery(store: Path, model: str, detector: str, enroll_photos: Path, dataset: Path):
    from iznet.data.dataset import FaceDataset
    from iznet.gallery import GalleryStore
    from iznet.gallery.calibrate import calibrate_on_pairs
    from iznet.gallery.embedders import model_record
    from iznet.pipeline import Pipeline
    from iznet.registry import create_detector, create_embedder, detector_spec

    gs = GalleryStore(store)
    embedder = create_embedder(model)
    g = gs.create(GALLERY, model_record(embedder, model), detector=detector_spec(detector))
    report = Pipeline(create_detector(detector), embedder, g).enroll_folder(enroll_photos, progress=True)
    if not report.enrolled:
        raise UserInputError(f"{enroll_photos}: no photo could be enrolled ("
                             + "; ".join(f"{o.source}: {o.reason}" for o in report.rejected[:3]) + ")")
    ds = FaceDataset(dataset)
    if embedder.calibration:
        # The threshold measured for the model on LFW pairs (its card): the dataset's crops are cut for the
        # models trained here, not to this model's chip.
        g.set_threshold(embedder.calibration)
        calibration = embedder.calibration
    elif ds.pairs_path("dev").is_file():
        # The dataset's dev pairs, not the gallery's own few exemplars: on a tiny gallery self-calibration has
        # a handful of impostor pairs and sets the threshold above all of them, too strict to name anyone.
        calibration = calibrate_on_pairs(g, embedder, ds.pairs("dev").pairs, ds.faces_dir, FAR,
                                         f"{dataset}/pairs_dev.txt")
    else:
        calibration = None  # too few dev people for pairs: the gallery calibrates on its own exemplars
    version = gs.save(g, action=f"demo: enroll {len(report.enrolled)} photo(s)")
    return g, report, calibration, version


def label_over_grpc(stack_store: Path, model: str, detector: str, source: DemoSource, out: Path) -> tuple[list, dict]:
    """Start the stack, label the group photos through the gateway, write their annotated photos and JSON,
    stop the stack. Returns the answers and the stack's processes (name -> pid) for the record."""
    from iznet.client import GatewayClient
    from services.stack import Stack, StackConfig

    stack = Stack(StackConfig(store=stack_store, gallery=GALLERY, model=model, detector=detector,
                              log_dir=out / "logs"))
    t0 = time.perf_counter()
    try:
        try:
            stack.start(timeout=600)  # Ray on a busy 2-core machine can take minutes
        except PreconditionError as exc:
            raise PreconditionError(f"the local stack did not start: {exc}. On a machine busy with other work Ray "
                                    f"can miss its fixed 30-second start-up window; run the demo again when it is "
                                    f"quieter. Logs: {out / 'logs'}") from None
        pids = {name: p.popen.pid for name, p in stack.procs.items()}
        note(f"up in {time.perf_counter() - t0:.0f}s: gateway {stack.gateway}, "
             + ", ".join(f"{n} {i['address']}" for n, i in stack.addresses().items() if n != "gateway")
             + f"; logs in {out / 'logs'}")
        say(6, f"labelling {len(source.groups)} photo(s) over gRPC through the gateway")
        answers = []
        with GatewayClient(stack.gateway, timeout=300) as gw:
            for photo, result in zip(source.groups, gw.label_many(source.groups, annotate=True)):
                if result.error:
                    raise UserInputError(f"{photo}: {result.error}")
                (out / f"{photo.stem}.labelled.jpg").write_bytes(result.annotated)
                doc = {**result.to_json(), "image_id": str(photo)}
                (out / f"{photo.stem}.json").write_text(json.dumps(doc, indent=2) + "\n")
                answers.append((photo, result))
    finally:
        codes = stack.stop()
    note("stack stopped: " + ", ".join(f"{n} (exit {c})" for n, c in codes.items()))
    return answers, pids


def _face_of(person: dict, faces: list):
    """The detected face that is ``person``'s: the one overlapping their face box most, or the largest one
    centred in their region."""
    import numpy as np

    from iznet.detection.boxes import iou_matrix

    if not faces:
        return None
    if "box" in person:
        overlap = iou_matrix(np.array([person["box"]], float), np.array([f.box for f in faces], float))[0]
        return faces[int(overlap.argmax())] if overlap.max() >= 0.2 else None
    x1, y1, x2, y2 = person["region"]
    inside = [f for f in faces if x1 <= (f.box[0] + f.box[2]) / 2 <= x2 and y1 <= (f.box[1] + f.box[3]) / 2 <= y2]
    return max(inside, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]), default=None)


def score(result, truth: list[dict]) -> tuple[int, int, list[str]]:
    """(right, out of, remarks) for one answer against who is in the photo. When the truth says where each
    person is, each is matched to their detected face; otherwise the names said are checked against the
    names expected."""
    faces = result.faces
    if truth and ("box" in truth[0] or "region" in truth[0]):
        remarks, right = [], 0
        for t in truth:
            face = _face_of(t, faces)
            if face is None:
                remarks.append(f"{t['name']}: not found by the detector")
                continue
            said = face.name
            ok = said == t["name"] if t["known"] else face.unknown
            right += ok
            who = t["name"] if t["known"] else f"{t['name']} (not enrolled)"
            remarks.append(f"{who}: said {said} {'(right)' if ok else '(wrong)'}")
        return right, len(truth), remarks
    said = [f.name for f in faces if not f.unknown]
    right = sum(t["name"] in said for t in truth)
    extra = [n for n in said if n not in {t["name"] for t in truth}]
    remarks = [f"expected {', '.join(t['name'] for t in truth)}; said {', '.join(f.name for f in faces) or 'nothing'}"]
    if extra:
        remarks.append(f"named someone not in the photo: {', '.join(extra)}")
    return right, len(truth), remarks


def write_report(model: Path, dataset: Path, out: Path, size: DemoSize):
    from iznet.data.dataset import FaceDataset
    from training.analysis.run import make_report

    ds = FaceDataset(dataset)
    # The test split: never trained on, never used to pick a threshold. Too few test people: every face.
    split = "test" if len(ds.identities("test")) >= 2 else None
    return make_report(out / "report", model=model, data=dataset, split=split, people=12, max_per_person=20,
                       perplexity=30, iterations=size.tsne_iterations, threads=1, progress=True,
                       title="IZ*Net demo: the trained embedder on " + ("test people" if split else "all faces"))


# ------------------------------------------------------------------------------------------------ the run


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the stack's services once stopped)."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run_demo(data: Path | None, out: Path, group: Path | None = None, size: str = "full") -> dict:
    """Run every stage; return (and write to OUT/demo.json) what it did and where everything is."""
    from iznet.data.dataset import FaceDataset

    if size not in SIZES:
        raise UserInputError(f"unknown size {size!r}: {', '.join(SIZES)}")
    if data is not None and not data.is_dir():
        raise UserInputError(f"{data}: no such folder (DATA is a folder with one sub-folder of photos per person)")
    if group is not None and not group.is_file():
        raise UserInputError(f"{group}: no such photo (GROUP is a photo to label)")
    dims = SIZES[size]
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    timings: dict[str, dict[str, float]] = {}
    cpu_at = [cpu_seconds()]

    def lap(name: str, t0: float) -> None:
        # CPU seconds too: on a shared machine the wall clock says more about the neighbours than the demo.
        cpu = cpu_seconds()
        timings[name] = {"wall_s": round(time.perf_counter() - t0, 1), "cpu_s": round(cpu - cpu_at[0], 1)}
        cpu_at[0] = cpu

    t0 = time.perf_counter()
    source = pick_source(data, group, out, dims)
    say(1, f"photos: {source.what}")
    lap("photos", t0)

    t0 = time.perf_counter()
    say(2, f"building the face dataset (detect, align, crop, split by person) from {source.train_photos}")
    dataset = out / "dataset"
    shutil.rmtree(dataset, ignore_errors=True)  # a fresh build: the demo's source may differ from last time
    build_faces(source, out)
    if not source.groups:  # generated: the group photos, now that we know whom Haar finds
        draw_generated_groups(source, dataset, out)
    lap("dataset", t0)

    t0 = time.perf_counter()
    net = f"{EMBEDDER['network']}/{EMBEDDER['method']}"
    say(3, f"training the {net} embedder on the train people (at most {dims.train_steps} steps, "
           f"{dims.train_minutes:g} min)")
    shutil.rmtree(out / "model", ignore_errors=True)
    model, summary = train_embedder(dataset, out, dims)
    dev = summary.get("dev") or {}
    best = summary.get("best_dev_accuracy")
    if dev:
        note(f"dev verification accuracy {best:.3f} (best; last {dev['accuracy']:.3f}, AUC {dev['auc']:.3f}) "
             + ("on pairs of people it never trained on" if source.split_by == "identity" else
                "on pairs of held-out photos of the people it trained on")
             + f"; {summary['step']} steps in {summary['elapsed_s']:.0f}s "
             f"-> {model}")
    else:
        note(f"no dev pairs (too few people) so no verification accuracy; {summary['step']} steps -> {model}")
    lap("train", t0)

    t0 = time.perf_counter()
    say(4, f"enrolling the gallery from {source.enroll_photos}")
    store = out / "store"
    shutil.rmtree(store, ignore_errors=True)
    serve_model, serve_detector = gallery_models(source, model)
    if source.synthetic:
        note("generated cartoon people: the gallery uses the embedder just trained and Haar. The imported "
             "models (dlib's ResNet, MTCNN) learnt real faces and neither finds nor tells cartoons apart; "
             "give DATA=... (or the shared photos) to see them name people")
    else:
        note("the gallery uses the default models: MTCNN finds the faces, dlib's ResNet (imported) names them; "
             "the embedder just trained is judged in the report (stage 7)")
    g, enrolled, calibration, version = enroll_gallery(store, serve_model, serve_detector, source.enroll_photos,
                                                       dataset)
    note(f"{len(g.people)} people, {len(enrolled.enrolled)} photos enrolled, {len(enrolled.rejected)} rejected; "
         f"gallery {GALLERY} version {version} in {store}")
    thr = g.threshold
    note(f"unknown threshold {thr['value']:.3f} at FAR {thr.get('far', FAR):g} from "
         + (thr.get("source", "") if calibration and str(thr.get("source", "")).startswith("model card") else
            f"the dataset's dev pairs (TAR {thr['tar']:.2f} on {thr['genuine_pairs']} same-person pairs)"
            if calibration else "the gallery's own exemplars (the dataset has no dev pairs)"))
    lap("enroll", t0)

    t0 = time.perf_counter()
    say(5, "starting the local stack: detection, embedding, gallery services and the Ray Serve gateway")
    answers, pids = label_over_grpc(store, serve_model, serve_detector, source, out)
    lap("serve_and_label", t0)
    right_total = of_total = 0
    photos = []
    for photo, result in answers:
        truth = source.truth.get(photo.name)
        line = f"{photo.name}: {len(result.faces)} face(s): {', '.join(result.names) or 'none found'}"
        entry = {"photo": str(photo), "annotated": str(out / f"{photo.stem}.labelled.jpg"),
                 "json": str(out / f"{photo.stem}.json"), "names": result.names}
        if truth:
            right, of, remarks = score(result, truth)
            right_total, of_total = right_total + right, of_total + of
            line += f"  -> {right} of {of} right"
            entry.update(right=right, of=of, remarks=remarks)
        note(line)
        for r in entry.get("remarks", []):
            note(f"  {r}")
        photos.append(entry)

    t0 = time.perf_counter()
    say(7, "writing the analysis report (t-SNE, distance boxplots, medoid table, warnings)")
    result, index = write_report(model, dataset, out, dims)
    note(f"nearest-medoid accuracy {result.summary['nearest_medoid_accuracy']:.3f} on "
         f"{result.summary['faces']} faces of {result.summary['people']} people; "
         f"{len([w for w in result.warnings if w.level == 'warning'])} warning(s)")
    lap("report", t0)

    record = {
        "source": source.what, "size": size, "embedder": {**EMBEDDER, "path": str(model)},
        "gallery_models": {"embedder": serve_model, "detector": serve_detector},
        "dev_accuracy": best, "dev": dev or None,
        "gallery": {"store": str(store), "name": GALLERY, "version": version, "people": len(g.people),
                    "threshold": g.threshold},
        "photos": photos, "right": right_total, "of": of_total, "report": str(index), "stack_pids": pids,
        "timings": timings, "seconds": round(time.perf_counter() - started, 1), "cpu_seconds": round(cpu_seconds(), 1),
    }
    (out / "demo.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    click.echo(f"done in {record['seconds']:.0f}s ({record['cpu_seconds']:.0f} CPU-s, the stack's processes included)."
               + (f" Named {right_total} of {of_total} faces right." if of_total else ""))
    click.echo(f"  annotated photo  {photos[0]['annotated']}")
    click.echo(f"  its JSON answer  {photos[0]['json']}")
    if len(photos) > 1:
        click.echo(f"  more photos      {', '.join(Path(p['annotated']).name for p in photos[1:])} (same folder)")
    click.echo(f"  analysis report  {index}")
    click.echo(f"  model, dataset   {model}, {dataset}")
    click.echo(f"  gallery          {store}/galleries/{GALLERY}  (iznet up --store {store} serves it again)")
    click.echo(f"  summary          {out / 'demo.json'}")
    return record
