"""``iznet gallery``: enroll people, list, rename and remove them, re-index to a new model; ``iznet label``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from iznet.cli.checks import RATE, SCORE, THRESHOLD, readable_store, writable_dir, writable_store
from iznet.errors import IZNetError, UserInputError
from iznet.registry import detector_help

STORE_HELP = "Artifact store holding the galleries (default ~/.iznet; env IZNET_STORE)."


def _store(value: Path | None, write: bool = False) -> Path:
    """The store, checked before any work: one ``error:`` line if it is not a usable folder."""
    from iznet.config import load_settings

    root = load_settings(store=value).store
    return writable_store(root) if write else readable_store(root)


def _photos(folders: tuple[Path, ...], person: str | None) -> dict[Path, list[Path] | None]:
    """What enroll will read, checked before any model is loaded: per FOLDER its files (with --person) or
    None (a folder of person folders)."""
    out: dict[Path, list[Path] | None] = {}
    for folder in folders:
        if person:
            files = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else [folder]
            if not files:
                raise UserInputError(f"{folder}: no photos in it to enroll as {person}")
            out[folder] = files
        elif not folder.is_dir():
            raise UserInputError(f"{folder}: not a folder (use --person NAME to enroll single photos)")
        else:
            out[folder] = None
    return out


store_option = click.option("--store", type=click.Path(path_type=Path), default=None,  # checked by _store
                            help=STORE_HELP)
name_argument = click.argument("name")


@click.group()
def gallery() -> None:
    """Enrolled people and their face vectors (FAISS), versioned in the artifact store.

    A gallery is bound to the embedding model that made its vectors; `reindex` re-embeds its stored face
    crops with another model into a new version, which becomes current in one atomic step.
    """


@gallery.command()
@name_argument
@click.argument("folders", nargs=-1, required=True, type=click.Path(path_type=Path, exists=True))
@store_option
@click.option("--person", default=None,
              help="Enroll FOLDERS (folders or photo files) as photos of this one person, instead of reading "
                   "one sub-folder per person.")
@click.option("--model", default=None,
              help="Embedding model for a new gallery (`iznet models list`): default (dlib-resnet), "
                   "baseline-lbp, baseline-pixels, a trained model's path or models/NAME. An existing gallery "
                   "keeps its own model.")
@click.option("--detector", default=None,
              help=f"Face detector for a new gallery: {detector_help()}. Recorded in the gallery; labelling uses "
                   "it unless told otherwise.")
@click.option("--min-face", type=click.IntRange(1), default=20, show_default=True,
              help="Ignore faces smaller than this many pixels across.")
@click.option("--crops/--no-crops", default=True, show_default=True,
              help="Keep the aligned face crops of every exemplar (needed to re-index to a new model). "
                   "--no-crops keeps only vectors, for privacy; fixed when the gallery is created.")
@click.option("--rule", type=click.Choice(["nearest", "knn", "centroid"]), default=None,
              help="Decision rule for a new gallery (default: centroid, the winner on dev data; see "
                   "docs/gallery.md).")
@click.option("--far", type=RATE, default=None,
              help="Target false-accept rate for the unknown threshold calibrated from the gallery's own "
                   "exemplars (default 0.01); `iznet gallery calibrate` uses dev pairs instead.")
@click.option("--json", "as_json", is_flag=True, help="Print the per-photo outcomes as JSON.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def enroll(name: str, folders: tuple[Path, ...], store: Path | None, person: str | None, model: str | None,
           detector: str | None, min_face: int, crops: bool, rule: str | None, far: float | None, as_json: bool,
           quiet: bool) -> None:
    """Enroll people into gallery NAME (created if new) from FOLDERS.

    Each FOLDER holds one sub-folder of photos per person (the folder name is the person's name), or, with
    --person, photos of that one person. Every photo is enrolled or rejected with a reason (unreadable, no
    face, face too small, duplicate); with several faces in a photo the largest and most central is taken
    and the outcome says so. The new gallery version is written atomically.
    """
    from iznet.gallery.embedders import model_record
    from iznet.gallery.gallery import GalleryStore
    from iznet.pipeline import EnrollReport, Pipeline
    from iznet.registry import create_detector, create_embedder, detector_spec

    root = _store(store, write=True)
    gs = GalleryStore(root)
    gs.store.dir("galleries", name)  # a bad name is refused before any work
    inputs = _photos(folders, person)
    if gs.exists(name):
        g = gs.load(name)
        emb = create_embedder(model or g.model.get("spec") or g.model["name"], store=root)
        if rule:
            g.rule = rule
        if far:
            g.far = far
    else:
        emb = create_embedder(model, store=root)
        kw = {"keep_crops": crops, "detector": detector_spec(detector)}
        if rule:
            kw["rule"] = rule
        if far:
            kw["far"] = far
        g = gs.create(name, model_record(emb, model), **kw)
        if emb.calibration and not far:
            # The threshold measured for this model on verification pairs (its card), not the few pairs a
            # small gallery has; `iznet gallery calibrate` replaces it with one from your own pairs.
            g.set_threshold(emb.calibration)
    pipe = Pipeline(create_detector(detector or g.detector, store=root), emb, g, min_face=min_face)
    report = EnrollReport()
    for folder, files in inputs.items():
        if files is not None:
            for f in files:
                report.outcomes.append(pipe.enroll_image(person, f, str(f)))
        else:
            report.outcomes.extend(pipe.enroll_folder(folder, progress=not quiet).outcomes)
    if not report.enrolled:  # nothing new: no new version, and say why
        for o in report.rejected:
            click.echo(f"rejected {o.source}: {o.reason}" + (f" ({o.detail})" if o.detail else ""), err=True)
        state = f"version {g.version} stays current" if g.version is not None else "it was not created"
        reasons = "; ".join(f"{o.source}: {o.reason}" for o in report.rejected[:3]) or "no photos found"
        raise UserInputError(f"nothing enrolled into gallery {name!r} ({len(report.rejected)} rejected: {reasons}); "
                             f"no new version written, {state}")
    version = gs.save(g, action=f"enroll {len(report.enrolled)} photo(s)")
    if as_json:
        click.echo(json.dumps({"gallery": g.version_info(), "threshold": g.threshold,
                               "outcomes": [o.to_json() for o in report.outcomes]}, indent=2))
        return
    for o in report.outcomes:
        if o.status == "rejected":
            click.echo(f"rejected {o.source}: {o.reason}" + (f" ({o.detail})" if o.detail else ""))
        elif "several faces" in o.note:
            click.echo(f"enrolled {o.source} as {o.person}: {o.note}")
    for who, (a, r) in sorted(report.by_person().items()):
        click.echo(f"  {who}: {a} enrolled, {r} rejected")
    click.echo(f"gallery {name} version {version}: {len(g.people)} people, {len(g.exemplars)} exemplars, "
               f"model {g.model['name']}, threshold {g.threshold_value:.4f} (FAR {g.threshold.get('far')}, "
               f"{g.threshold.get('source')})")


@gallery.command("list")
@click.argument("name", required=False)
@store_option
@click.option("--version", type=int, default=None, help="Read this version instead of the current one.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_(name: str | None, store: Path | None, version: int | None, as_json: bool) -> None:
    """List the people in gallery NAME (or, without NAME, the galleries in the store)."""
    from iznet.gallery.gallery import GalleryStore

    gs = GalleryStore(_store(store))
    if name is None:
        names = gs.names()
        if as_json:
            click.echo(json.dumps(names))
        for n in names if not as_json else []:
            click.echo(f"{n}\tversion {gs.current_version(n)}")
        if not names and not as_json:
            click.echo(f"no galleries in {gs.store.root}")
        return
    g = gs.load(name, version)
    rows = [{"name": p.name, "id": p.id, "exemplars": len(g.exemplars_of(p.id))}
            for p in sorted(g.people.values(), key=lambda p: p.name)]
    if as_json:
        click.echo(json.dumps({"gallery": g.version_info(), "people": rows}, indent=2))
        return
    for r in rows:
        click.echo(f"{r['name']}\t{r['exemplars']} exemplar(s)\t{r['id']}")
    click.echo(f"{len(rows)} people, {len(g.exemplars)} exemplars (gallery {name} version {g.version})")


@gallery.command()
@name_argument
@click.argument("person")
@click.argument("new_name")
@store_option
def rename(name: str, person: str, new_name: str, store: Path | None) -> None:
    """Rename PERSON to NEW_NAME in gallery NAME (a new version)."""
    from iznet.gallery.gallery import GalleryStore

    gs = GalleryStore(_store(store, write=True))
    g = gs.load(name)
    g.rename(person, new_name)
    v = gs.save(g, action=f"rename {person} -> {new_name}")
    click.echo(f"renamed {person} to {new_name}: gallery {name} version {v}")


@gallery.command()
@name_argument
@click.argument("person")
@store_option
def remove(name: str, person: str, store: Path | None) -> None:
    """Remove PERSON from gallery NAME with all their vectors and crops (a new version).

    Older versions keep their copy until they are deleted from the store.
    """
    from iznet.gallery.gallery import GalleryStore

    gs = GalleryStore(_store(store, write=True))
    g = gs.load(name)
    n = g.remove(person)
    v = gs.save(g, action=f"remove {person}")
    click.echo(f"removed {person} ({n} exemplar(s)): gallery {name} version {v}")


@gallery.command()
@name_argument
@click.option("--model", required=True,
              help="The new embedding model: default (dlib-resnet), baseline-lbp, baseline-pixels, a trained "
                   "model's path or models/NAME.")
@store_option
@click.option("--switch/--no-switch", default=True, show_default=True,
              help="Make the new version current at once; --no-switch publishes it and leaves the old one "
                   "current (switch later with `iznet gallery switch`).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def reindex(name: str, model: str, store: Path | None, switch: bool, quiet: bool) -> None:
    """Re-embed gallery NAME's stored face crops with another model into a new version.

    The old version stays readable (by number) throughout; the new one becomes current in one atomic step.
    """
    from iznet.registry import create_embedder
    from iznet.gallery.gallery import GalleryStore, reindex as do_reindex

    gs = GalleryStore(_store(store, write=True))
    emb = create_embedder(model, store=gs.store.root)
    old, new = do_reindex(gs, name, emb, make_current=switch, progress=not quiet, spec=model)
    state = "current" if switch else f"not current (version {old} still is)"
    click.echo(f"gallery {name}: version {new} made with {emb.version['name']} from version {old}; {state}")


@gallery.command()
@name_argument
@click.argument("version", type=int)
@store_option
def switch(name: str, version: int, store: Path | None) -> None:
    """Make VERSION of gallery NAME current (atomically)."""
    from iznet.gallery.gallery import GalleryStore

    GalleryStore(_store(store, write=True)).switch(name, version)
    click.echo(f"gallery {name}: version {version} is current")


@gallery.command()
@click.argument("name", required=False)
@store_option
@click.option("--dry-run", is_flag=True, help="List what would be removed, remove nothing.")
def gc(name: str | None, store: Path | None, dry_run: bool) -> None:
    """Remove the staging folders of writers that died (of gallery NAME, or of every gallery).

    A writer stages a new version in a hidden folder while it holds the gallery's lock; one killed mid-write
    leaves the folder, with its face crops, behind. Opening the store removes them too; a folder is stale when
    no writer holds the lock, or when it is older than the current holder's lock.
    """
    from iznet.gallery.gallery import GalleryStore

    gs = GalleryStore(_store(store, write=not dry_run), gc=False)
    if name is not None:
        gs.current_version(name)  # NOT_FOUND for a gallery that is not there
    stale = gs.stale_staging(name) if dry_run else gs.gc(name)
    for st in stale:
        click.echo(f"{'would remove' if dry_run else 'removed'} {st.path} ({st.bytes / 2**20:.1f} MiB, "
                   f"{st.age_s / 3600:.1f} h old)")
    total = sum(st.bytes for st in stale)
    click.echo(f"{len(stale)} stale staging folder(s), {total / 2**20:.1f} MiB"
               + (" (dry run: nothing removed)" if dry_run else " removed"))


@gallery.command()
@name_argument
@store_option
@click.option("--version", type=int, default=None, help="Describe this version instead of the current one.")
def info(name: str, store: Path | None, version: int | None) -> None:
    """Describe gallery NAME: model, decision rule, threshold, counts, versions (JSON)."""
    from iznet.gallery.gallery import GalleryStore

    gs = GalleryStore(_store(store))
    g = gs.load(name, version)
    out = g.info()
    out.update(version=g.version, current=gs.current_version(name), versions=gs.versions(name),
               history=g.history)
    click.echo(json.dumps(out, indent=2, default=str))


@gallery.command()
@name_argument
@store_option
@click.option("--dataset", type=click.Path(path_type=Path, file_okay=False, exists=True), default=None,
              help="A face dataset built by `iznet data build`: its dev pairs (pairs_dev.txt) and crops.")
@click.option("--split", type=click.Choice(["dev", "test"]), default="dev", show_default=True,
              help="Which pairs of --dataset to use (calibrate on dev, report on test).")
@click.option("--pairs", type=click.Path(path_type=Path, dir_okay=False, exists=True), default=None,
              help="An LFW-format pairs file (instead of --dataset); needs --faces.")
@click.option("--faces", type=click.Path(path_type=Path, file_okay=False, exists=True), default=None,
              help="Folder of aligned crops <name>/<name>_NNNN.jpg that --pairs refers to.")
@click.option("--far", type=RATE, default=1e-2, show_default=True, help="Target false-accept rate per comparison.")
def calibrate(name: str, store: Path | None, dataset: Path | None, split: str, pairs: Path | None,
              faces: Path | None, far: float) -> None:
    """Calibrate gallery NAME's unknown threshold from verification pairs at a target FAR (a new version)."""
    from iznet.data.dataset import FaceDataset
    from iznet.data.pairs import read_pairs
    from iznet.gallery.calibrate import calibrate_on_pairs
    from iznet.registry import create_embedder
    from iznet.gallery.gallery import GalleryStore

    if dataset is not None:
        ds = FaceDataset(dataset)
        pf, faces_dir, src = ds.pairs(split), ds.faces_dir, f"{dataset}/pairs_{split}.txt"
    elif pairs is not None and faces is not None:
        pf, faces_dir, src = read_pairs(pairs), faces, str(pairs)
    else:
        raise UserInputError("give --dataset DIR, or --pairs FILE with --faces DIR")
    gs = GalleryStore(_store(store, write=True))
    g = gs.load(name)
    emb = create_embedder(g.model.get("spec") or g.model["name"])
    result = calibrate_on_pairs(g, emb, pf.pairs, faces_dir, far, src)
    v = gs.save(g, action=f"calibrate at FAR {far:g} on {src}")
    click.echo(json.dumps(result, indent=2))
    click.echo(f"gallery {name} version {v}: threshold {result['value']:.4f}")


# --------------------------------------------------------------------------------------------- label


@click.command()
@click.argument("photos", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-g", "--gallery", "gallery_name", default="default", show_default=True,
              help="Gallery to look faces up in.")
@store_option
@click.option("-o", "--out", type=click.Path(path_type=Path), default=None,  # checked by writable_dir
              help="Folder for the annotated photos (<stem>.labelled.jpg) and their JSON (<stem>.json). "
                   "Without it, JSON goes to standard output and no photo is written.")
@click.option("--model", default=None, help="Embedding model (must be the one the gallery was built with; "
                                            "default: the gallery's).")
@click.option("--detector", default=None,
              help=f"Face detector: {detector_help()} (default: the one the gallery was enrolled with, so "
                   "crops are framed alike).")
@click.option("--threshold", type=THRESHOLD, default=None,
              help="Override the gallery's calibrated unknown threshold (a similarity in (0, 1], higher is "
                   "stricter).")
@click.option("--min-face", type=click.IntRange(1), default=20, show_default=True,
              help="Faces smaller than this many pixels are reported but not recognised.")
@click.option("--min-score", type=SCORE, default=0.0, show_default=True,
              help="Drop detections below this detector score (0 to 1).")
@click.option("--max-pixels", type=click.IntRange(1), default=64_000_000, show_default=True,
              help="Refuse photos larger than this many pixels.")
def label(photos: tuple[Path, ...], gallery_name: str, store: Path | None, out: Path | None, model: str | None,
          detector: str | None, threshold: float | None, min_face: int, min_score: float, max_pixels: int) -> None:
    """Find every face in PHOTOS and name it from the gallery (or `unknown`).

    Writes the annotated photo (red boxes and names) and JSON per photo: box, name or unknown, score,
    distance, the threshold that decided, and the detector, model and gallery versions. A photo that cannot
    be read is reported and skipped; the exit status is 2 if any was.
    """
    from iznet.drawing import annotate
    from iznet.imageio import read_image, write_image
    from iznet.pipeline import Pipeline
    from iznet.store import atomic_write_json

    root = _store(store)
    if out is not None:  # before any model is loaded
        out = writable_dir(out, "output folder")
    pipe = Pipeline.from_store(root, gallery_name, model=model, detector=detector, threshold=threshold,
                               min_face=min_face, min_score=min_score, max_pixels=max_pixels)
    failed = 0
    results = []
    for photo in photos:
        try:
            image = read_image(photo, max_pixels=max_pixels)
            res = pipe.label(image, image_id=str(photo))
        except IZNetError as exc:
            failed += 1
            click.echo(f"error: {exc}", err=True)
            results.append({"image_id": str(photo), "error": str(exc)})
            continue
        names = ", ".join(f.name for f in res.faces) or "no faces"
        click.echo(f"{photo}: {len(res.faces)} face(s): {names}", err=out is None)
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            write_image(out / f"{photo.stem}.labelled.jpg", annotate(image, res.faces))
            atomic_write_json(out / f"{photo.stem}.json", res.to_json())
        results.append(res.to_json())
    if out is None:
        click.echo(json.dumps(results if len(results) != 1 else results[0], indent=2))
    if failed:
        raise UserInputError(f"{failed} of {len(photos)} photo(s) could not be labelled (see above)")
