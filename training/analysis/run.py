"""``make_report(...)``: from a model and faces (or saved embeddings) to a report folder, in one call whose
arguments are all plain JSON values, so the CLI and a job queue (Celery) run exactly the same thing."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from iznet.errors import UserInputError
from training.analysis import inputs
from training.analysis.checks import CheckSettings
from training.analysis.core import AnalysisResult, analyze
from training.analysis.report import write_report
from training.analysis.tsne import STUDY_ITERATIONS, STUDY_PERPLEXITY


def make_report(out: str | Path, *, model: str | Path | None = None, data: str | Path | None = None,
                embeddings: str | Path | None = None, split: str | None = None, people: int | None = None,
                names: list[str] | tuple[str, ...] = (), max_per_person: int | None = None,
                pairs: str | Path | None = None, tsne: bool = True, perplexity: float = STUDY_PERPLEXITY,
                iterations: int = STUDY_ITERATIONS, spread_quantile: float = 0.95, collapse_share: float = 0.05,
                batch_size: int = 64, threads: int = 1, seed: int = 0, title: str | None = None,
                save_embeddings: bool = True, progress: bool = False,
                say: Callable[[str], None] | None = None) -> tuple[AnalysisResult, Path]:
    """Embed the faces of ``data`` with ``model`` (or read ``embeddings``, an .npz), analyse them and write the
    report into ``out``. Returns the result and the index.html path. User mistakes raise ``IZNetError``s."""
    say = say or (lambda _m: None)
    out = Path(out)
    names = list(names or [])
    if embeddings and model:
        raise UserInputError("give --model (with --data) or --embeddings, not both")
    source: dict[str, Any] = {"split": split, "people": people, "person": names, "max_per_person": max_per_person}
    if embeddings:
        emb, labels, paths, card = inputs.load_embeddings(embeddings)
        source["embeddings"] = str(embeddings)
        if people or names or max_per_person:
            rows = inputs.choose_rows(labels, people, names, max_per_person, seed=seed)
            emb, labels = emb[rows], labels[rows]
            paths = [paths[k] for k in rows] if paths else None
    else:
        if not model or not data:
            raise UserInputError("give --model and --data (or --embeddings FILE.npz)")
        faces, kind = inputs.list_faces(data, split)
        faces = inputs.choose_people(faces, people, names, max_per_person, seed=seed)
        say(f"{len(faces)} faces of {len({f.identity for f in faces})} people from {data}")
        embedder = inputs.load_model(model, threads)
        card = inputs.model_card(embedder)
        emb, kept, skipped = inputs.embed_faces(embedder, faces, batch_size, progress=progress)
        for f, why in skipped[:10]:
            say(f"  skipped {f.path}: {why}")
        labels = np.array([f.identity for f in kept])
        paths = [str(f.path) for f in kept]
        source.update(model=str(model), data=str(data), data_kind=kind, skipped=len(skipped))
        if pairs is None and kind == "dataset" and split in ("dev", "test"):
            candidate = Path(data) / f"pairs_{split}.txt"
            pairs = candidate if candidate.is_file() else None
        if save_embeddings:
            inputs.save_embeddings(out / "embeddings.npz", emb, labels, paths, card)
    mapped = None
    if pairs is not None:
        if not paths:
            raise UserInputError("--pairs needs each face's file name: these embeddings have no 'paths'")
        mapped = inputs.map_pairs(pairs, labels, paths, note=say)
        source["pairs"] = str(pairs)
    result = analyze(emb, labels, tsne=tsne, perplexity=perplexity, iterations=iterations, seed=seed,
                     check_settings=CheckSettings(spread_quantile=spread_quantile, collapse_share=collapse_share),
                     pairs=mapped, pairs_source=f"{pairs} (its folds)" if mapped else None, paths=paths,
                     threads=threads, progress=say)
    if title is None:
        name = (card or {}).get("name") or (Path(model).name if model else Path(str(embeddings)).stem)
        title = f"IZ*Net analysis: {name}"
    index = write_report(result, out, title=title, model_card=card, source=source)
    return result, index
