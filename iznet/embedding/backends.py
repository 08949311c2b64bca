"""Where embeddings are computed: in-process torch (the default), in-process onnxruntime, or a remote Triton
Inference Server over gRPC (KServe v2 via ``tritonclient``). All three take BGR uint8 face crops and give the
same (N, dim) float32 unit vectors, equal within :data:`BACKEND_ATOL` per component (tested), and report the
same ``version`` (the trained weights' digest), so a gallery made through one backend is searched through
another.

    emb = make_backend()                                    # IZNET_EMBED_BACKEND, IZNET_EMBED_MODEL, ...
    emb = make_backend("torch", model="runs/small")        # model.pt + model.json
    emb = make_backend("onnx", model="~/.iznet/triton/iznet_embedder")   # an export (CURRENT version)
    emb = make_backend("triton", triton_url="127.0.0.1:8001", triton_model="iznet_embedder")
    vecs = emb.embed(crops); emb.version; emb.backend; emb.close()

Configuration (a flag given to a command wins over the environment):

==========================  ===============================================================  =================
``IZNET_EMBED_BACKEND``     ``torch`` | ``onnx`` | ``triton``                                ``torch``
``IZNET_EMBED_MODEL``       torch: a trained model dir; onnx: ``model.onnx``, an export       (none)
                            version dir, or an exported model's dir in the store
``IZNET_TRITON_URL``        host:port of Triton's gRPC endpoint                             ``127.0.0.1:8001``
``IZNET_TRITON_MODEL``      the model's name in Triton's repository                         ``iznet_embedder``
``IZNET_TRITON_VERSION``    a model version to pin ("" = the one Triton serves)             ``""``
``IZNET_TRITON_TIMEOUT``    seconds per request                                             ``30``
==========================  ===============================================================  =================

A Triton that is down, or has not loaded the model, raises :class:`iznet.errors.UnavailableError`
(gRPC ``UNAVAILABLE``) with Triton's own reason.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from iznet.data.align import ChipSpec
from iznet.embedding.preprocess import Preprocess, crop_resize
from iznet.errors import IZNetError, NotFoundError, UnavailableError, UserInputError

BACKENDS = ("torch", "onnx", "triton")
#: Largest |difference| between any two backends for any component of a unit embedding (float32, CPU).
BACKEND_ATOL = 1e-4
DEFAULT_TRITON_URL = "127.0.0.1:8001"
DEFAULT_TRITON_MODEL = "iznet_embedder"


@runtime_checkable
class EmbeddingBackend(Protocol):
    backend: str
    dim: int
    preprocess: Preprocess
    version: dict

    def embed(self, crops: list[np.ndarray]) -> np.ndarray: ...

    def close(self) -> None: ...


def prepare_uint8(crops: list[np.ndarray], pp: Preprocess) -> np.ndarray:
    """(N, S, S, 3) uint8 BGR: each crop's centre region resized to the network's input (the wire format)."""
    return np.stack([crop_resize(c, pp.crop_fraction, pp.input_size) for c in crops])


class _GraphBackend:
    """Shared by the onnx and triton backends: both run the exported graph on prepared uint8 crops."""

    backend = "?"

    def _init_card(self, card: dict, where: str) -> None:
        try:
            self.card = card
            self.preprocess = Preprocess.from_dict(card["preprocess"])
            self.dim = int(card["dim"])
            self.version = dict(card["version"])
            self.flip_tta = bool(card.get("flip_tta", True))
            self.chip = ChipSpec.parse(card.get("chip"))
            self.calibration = dict(card.get("threshold") or {})
        except (KeyError, TypeError, ValueError) as exc:
            raise UserInputError(f"{where}: no usable IZ*Net model card ({exc!r}); export it with `iznet export`") \
                from None

    @property
    def input_size(self) -> int:
        return self.preprocess.input_size

    def embed(self, crops: list[np.ndarray]) -> np.ndarray:
        crops = list(crops)
        if not crops:
            return np.zeros((0, self.dim), np.float32)
        x = prepare_uint8(crops, self.preprocess)
        return np.concatenate([self._run(x[i:i + self.max_batch]) for i in range(0, len(x), self.max_batch)])

    def embed_prepared(self, x: np.ndarray) -> np.ndarray:
        """Embed an already prepared (N, S, S, 3) uint8 batch (benchmarks use this to time the model alone)."""
        return np.concatenate([self._run(x[i:i + self.max_batch]) for i in range(0, len(x), self.max_batch)])

    def _run(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ------------------------------------------------------------------------------------------------ onnx
def find_onnx(path: str | Path) -> Path:
    """``model.onnx`` itself, a folder holding it, or an exported model's folder in the store (its CURRENT)."""
    p = Path(path).expanduser()
    if p.is_file() and p.suffix == ".onnx":
        return p
    if p.is_dir():
        if (p / "model.onnx").is_file():
            return p / "model.onnx"
        current = p / "CURRENT"
        if current.is_file():
            cand = p / current.read_text().strip() / "model.onnx"
            if cand.is_file():
                return cand
    hint = " (a torch model dir: run `iznet export` first)" if (p / "model.pt").is_file() else ""
    raise NotFoundError(f"no exported ONNX embedder at {p}{hint}")


class OnnxEmbedder(_GraphBackend):
    """onnxruntime in this process, on the exported ``model.onnx`` (its card is in the file's metadata)."""

    backend = "onnx"

    def __init__(self, path: str | Path, threads: int | None = None, max_batch: int = 64):
        import onnxruntime as ort

        self.path = find_onnx(path)
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - a broken file is the user's to fix
            raise UserInputError(f"{self.path}: onnxruntime cannot load it ({str(exc)[:300]})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        try:
            card = json.loads(meta["iznet_card"])
        except (KeyError, json.JSONDecodeError):
            card = {}
        self._init_card(card, str(self.path))
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self.max_batch = max_batch

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: x})[0]


# ---------------------------------------------------------------------------------------------- triton
def _status_name(exc) -> str:
    s = str(exc.status() or "") if hasattr(exc, "status") else ""
    return s.rsplit(".", 1)[-1]


def _short(reason: str, limit: int = 400) -> str:
    """Triton's reason without the python backend's traceback ("At: ..."), on one line."""
    reason = reason.split("\n\nAt:")[0].strip().replace("\n", " ")
    return reason if len(reason) <= limit else reason[:limit] + "..."


def _message(exc) -> str:
    return (exc.message() if hasattr(exc, "message") else str(exc)) or str(exc)


class TritonEmbedder(_GraphBackend):
    """A remote Triton Inference Server (KServe v2 over gRPC). The model's config carries the IZ*Net card
    (parameter ``iznet_card``), so a URL and a model name are all a client needs."""

    backend = "triton"

    def __init__(self, url: str = DEFAULT_TRITON_URL, model: str = DEFAULT_TRITON_MODEL, version: str = "",
                 timeout: float = 30.0, max_batch: int | None = None):
        import tritonclient.grpc as grpcclient

        self.url, self.model_name, self.model_version, self.timeout = url, model, str(version or ""), timeout
        self.served_version: str | None = None  # the version that answered the last call
        self._grpc = grpcclient
        try:
            self.client = grpcclient.InferenceServerClient(url=url)
        except Exception as exc:  # noqa: BLE001 - a malformed URL
            raise UserInputError(f"bad Triton URL {url!r}: {exc}") from None
        self._check_ready()
        self._read_config()
        server_max = int(self._config.get("max_batch_size", 0)) or 1
        self.max_batch = min(server_max, max_batch) if max_batch else server_max

    def _read_config(self) -> None:
        """The model card from Triton's config, and the version that config serves (``version_policy``)."""
        try:
            cfg = self.client.get_model_config(self.model_name, self.model_version, as_json=True,
                                               client_timeout=self.timeout)["config"]
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc, "reading the model config") from None
        params = {k: v.get("string_value", "") for k, v in cfg.get("parameters", {}).items()}
        try:
            card = json.loads(params.get("iznet_card", ""))
        except json.JSONDecodeError:
            card = {}
        self._init_card(card, f"Triton model {self.model_name!r} at {self.url}")
        self._config = cfg
        versions = cfg.get("version_policy", {}).get("specific", {}).get("versions", [])
        self._card_version = str(versions[0]) if len(versions) == 1 else None
        self.input_name = cfg["input"][0]["name"]
        self.output_name = cfg["output"][0]["name"]

    # health -------------------------------------------------------------------------------------------
    def _model_state(self) -> str:
        """Triton's own account of why the model is not ready (from the repository index)."""
        try:
            index = self.client.get_model_repository_index(as_json=True, client_timeout=self.timeout)
        except Exception as exc:  # noqa: BLE001
            return f"repository index unavailable ({_message(exc)})"
        rows = [m for m in index.get("models", []) if m.get("name") == self.model_name]
        if not rows:
            names = sorted({m.get("name", "?") for m in index.get("models", [])})
            return f"no model named {self.model_name!r} in its repository (it has: {', '.join(names) or 'none'})"
        if self.model_version:
            rows = [m for m in rows if str(m.get("version", "")) == self.model_version] or rows
        return "; ".join(f"version {m.get('version', '?')} is {m.get('state', 'UNKNOWN')}"
                         + (f": {_short(m['reason'])}" if m.get("reason") else "") for m in rows)

    def health(self) -> tuple[bool, str]:
        """(ready, reason): is Triton live and serving the model? Never raises."""
        try:
            if not self.client.is_server_live(client_timeout=self.timeout):
                return False, f"Triton at {self.url} is not live"
        except Exception as exc:  # noqa: BLE001
            return False, f"Triton at {self.url} is unreachable: {_message(exc)}"
        try:
            if self.client.is_model_ready(self.model_name, self.model_version, client_timeout=self.timeout):
                return True, "ready"
        except Exception as exc:  # noqa: BLE001
            return False, f"Triton at {self.url}: {_message(exc)}"
        return False, f"Triton at {self.url} has not loaded model {self.model_name!r}: {self._model_state()}"

    def _check_ready(self) -> None:
        ok, reason = self.health()
        if not ok:
            raise UnavailableError(reason)

    def _error(self, exc, doing: str) -> IZNetError:
        status, msg = _status_name(exc), _message(exc)
        if status == "INVALID_ARGUMENT":
            return UserInputError(f"Triton at {self.url} refused {doing}: {msg}")
        ok, reason = self.health()
        if not ok:
            return UnavailableError(reason)
        if status in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "CANCELLED") or not status:
            return UnavailableError(f"Triton at {self.url} failed {doing} ({status or 'no status'}): {msg}")
        err = IZNetError(f"Triton at {self.url} failed {doing} ({status}): {msg}")
        return err

    # inference ----------------------------------------------------------------------------------------
    def embed(self, crops: list[np.ndarray]) -> np.ndarray:
        """Like the other backends; and when Triton switches versions (a new export, polled) the vectors of
        one call still come from one version, and ``version`` names it."""
        crops = list(crops)
        if not crops:
            return np.zeros((0, self.dim), np.float32)
        x = prepare_uint8(crops, self.preprocess)
        out, served = self._chunks(x, self.model_version)
        if len(set(served)) > 1:  # a switch in the middle of this call: again, all on the newest
            out, served = self._chunks(x, served[-1])
        self.served_version = served[-1]
        if self._card_version is not None and served[-1] != self._card_version:
            self._read_config()  # the card of the version that answered
        return out

    def embed_prepared(self, x: np.ndarray) -> np.ndarray:
        return self._chunks(x, self.model_version)[0]

    def _chunks(self, x: np.ndarray, version: str) -> tuple[np.ndarray, list[str]]:
        outs, served = [], []
        for i in range(0, len(x), self.max_batch):
            o, v = self._infer(x[i:i + self.max_batch], version)
            outs.append(o)
            served.append(v)
        return np.concatenate(outs), served

    def _infer(self, x: np.ndarray, version: str) -> tuple[np.ndarray, str]:
        g = self._grpc
        inp = g.InferInput(self.input_name, list(x.shape), "UINT8")
        inp.set_data_from_numpy(np.ascontiguousarray(x))
        try:
            result = self.client.infer(self.model_name, [inp], model_version=version,
                                       outputs=[g.InferRequestedOutput(self.output_name)],
                                       client_timeout=self.timeout)
        except Exception as exc:  # noqa: BLE001 - mapped to the error a caller can act on
            raise self._error(exc, f"inference on {self.model_name!r}") from None
        return result.as_numpy(self.output_name), result.get_response().model_version

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:  # noqa: BLE001
            pass


# --------------------------------------------------------------------------------------------- factory
def _env(name: str, default: str = "") -> str:
    return os.environ.get("IZNET_" + name, "") or default


def make_backend(backend: str | None = None, model: str | Path | None = None, *, threads: int | None = None,
                  flip_tta: bool | None = None, triton_url: str | None = None, triton_model: str | None = None,
                  triton_version: str | None = None, triton_timeout: float | None = None) -> EmbeddingBackend:
    """The embedder the configuration asks for (arguments win over the ``IZNET_*`` environment, see the
    module doc). Every backend has ``embed(crops)``, ``dim``, ``preprocess``, ``version``, ``backend`` and
    ``close()``."""
    backend = (backend or _env("EMBED_BACKEND", "torch")).strip().lower()
    if backend not in BACKENDS:
        raise UserInputError(f"unknown embedding backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    model = model or _env("EMBED_MODEL") or None
    if backend == "torch":
        from iznet.embedding.embedder import load_embedder

        if not model:
            raise UserInputError("the torch backend needs a model: a trained model dir (--model / IZNET_EMBED_MODEL)")
        emb = load_embedder(model, threads=threads, flip_tta=flip_tta)
        emb.backend = "torch"
        if not hasattr(emb, "close"):
            emb.close = lambda: None
        return emb
    if backend == "onnx":
        if not model:
            raise UserInputError("the onnx backend needs an exported model (--model / IZNET_EMBED_MODEL): "
                                 "model.onnx or its folder; see `iznet export`")
        emb = OnnxEmbedder(model, threads=threads)
    else:
        timeout = triton_timeout if triton_timeout is not None else float(_env("TRITON_TIMEOUT", "30"))
        emb = TritonEmbedder(url=triton_url or _env("TRITON_URL", DEFAULT_TRITON_URL),
                             model=triton_model or _env("TRITON_MODEL", DEFAULT_TRITON_MODEL),
                             version=triton_version if triton_version is not None else _env("TRITON_VERSION"),
                             timeout=timeout)
    if flip_tta is not None and bool(flip_tta) != emb.flip_tta:
        emb.close()
        raise UserInputError(f"the {backend} backend's graph was exported with flip_tta={emb.flip_tta}; "
                             "re-export to change it")
    return emb
