"""Serving the current version of an artifact and switching when a new one is published, without dropping or
mixing requests.

:class:`Current` holds the loaded object of ``<store>/<kind>/<name>/CURRENT``. A request takes a snapshot
(:meth:`Current.get`) and uses that one object to the end; a watcher thread polls ``CURRENT`` and, when it
moves, loads the new version *beside* the old one and swaps the reference in one assignment. Requests already
running finish on the old object, new ones get the new; nobody waits and nobody sees half a version.
The last few versions stay loaded (:meth:`Current.find`), so a caller that pinned a version (a model digest)
during a switch is still answered by the version it asked for.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Generic, TypeVar

from iznet.store import ArtifactStore

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Loaded(Generic[T]):
    version: int
    obj: T


class Current(Generic[T]):
    def __init__(self, store: ArtifactStore, kind: str, name: str, loader: Callable[[object], T],
                 poll_s: float = 1.0, keep: int = 2):
        self.store, self.kind, self.name, self.loader = store, kind, name, loader
        self.poll_s, self.keep = poll_s, max(1, keep)
        self._lock = threading.Lock()
        self._loaded: OrderedDict[int, Loaded[T]] = OrderedDict()
        self._current: Loaded[T] = self._load(store.current_version(kind, name))  # raises NotFoundError
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.switches = 0

    def _load(self, version: int) -> Loaded[T]:
        with self._lock:
            if version in self._loaded:
                return self._loaded[version]
        loaded = Loaded(version, self.loader(self.store.dir(self.kind, self.name) / str(version)))
        with self._lock:
            self._loaded[version] = loaded
            while len(self._loaded) > self.keep:
                self._loaded.popitem(last=False)
        return loaded

    def get(self) -> Loaded[T]:
        """The version to answer this request with (use the same snapshot to the end of the request)."""
        return self._current

    def find(self, pred: Callable[[T], bool]) -> Loaded[T] | None:
        """The newest loaded version whose object satisfies ``pred`` (the current one first)."""
        cur = self._current
        if pred(cur.obj):
            return cur
        with self._lock:
            candidates = list(reversed(self._loaded.values()))
        return next((v for v in candidates if pred(v.obj)), None)

    def refresh(self) -> bool:
        """Load the version ``CURRENT`` names if it is not the one served; True when it switched."""
        try:
            version = self.store.current_version(self.kind, self.name)
        except Exception as exc:  # noqa: BLE001 - a store hiccup must not kill the server; keep serving
            log.warning("%s/%s: cannot read CURRENT: %s", self.kind, self.name, exc)
            return False
        if version == self._current.version:
            return False
        try:
            loaded = self._load(version)
        except Exception as exc:  # noqa: BLE001 - a broken new version: keep serving the old one
            log.error("%s/%s v%s failed to load, still serving v%s: %s", self.kind, self.name, version,
                      self._current.version, exc)
            return False
        self._current = loaded  # one reference assignment: atomic for readers
        self.switches += 1
        log.info("%s/%s: now serving v%s", self.kind, self.name, version)
        return True

    def set(self, version: int, obj: T) -> None:
        """Serve an object this process just published itself (no reload from disk)."""
        loaded = Loaded(version, obj)
        with self._lock:
            self._loaded[version] = loaded
            while len(self._loaded) > self.keep:
                self._loaded.popitem(last=False)
        self._current = loaded

    def start(self) -> "Current[T]":
        if self._thread is None and self.poll_s > 0:
            self._thread = threading.Thread(target=self._watch, name=f"watch-{self.kind}-{self.name}", daemon=True)
            self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.refresh()

    def stop(self) -> None:
        self._stop.set()


# ------------------------------------------------------------------------------- model versions in the store
#
# A served embedding model is ``models/<name>`` in the artifact store; each version folder holds either a
# trained model (``model.pt`` + ``model.json``, as ``iznet embed train`` writes it) or a ``model.json`` that names a registered
# embedder (``{"kind": "embedder", "spec": "baseline-lbp"}``). Publishing a version and moving CURRENT is how
# a new model reaches the running embedding service.


def publish_model(store: ArtifactStore, name: str, spec: str) -> int:
    """Publish the embedder ``spec`` (a registered name, e.g. ``baseline-lbp``, or a trained model's folder) as
    the next version of ``models/<name>`` and make it current; returns the version."""
    import shutil
    from pathlib import Path

    from iznet.store import atomic_write_json

    staged = store.stage("models", name)
    src = Path(spec)
    if src.is_dir():
        for f in ("model.pt", "model.json"):
            shutil.copy2(src / f, staged / f)
    else:
        atomic_write_json(staged / "model.json", {"kind": "embedder", "spec": spec})
    return store.publish("models", name, staged)


def load_model_version(path) -> object:
    """An embedder from a version folder of ``models/<name>`` (see :func:`publish_model`)."""
    import json
    from pathlib import Path

    from iznet.errors import NotFoundError
    from iznet.registry import create_embedder

    path = Path(path)
    card = path / "model.json"
    if not card.is_file():
        raise NotFoundError(f"no model at {path} (needs model.json)")
    spec = json.loads(card.read_text()).get("spec")
    return create_embedder(spec if spec else str(path))


class Fixed(Generic[T]):
    """The :class:`Current` interface over one object that never changes (a model given by name or path)."""

    def __init__(self, obj: T):
        self._loaded = Loaded(0, obj)

    def get(self) -> Loaded[T]:
        return self._loaded

    def find(self, pred: Callable[[T], bool]) -> Loaded[T] | None:
        return self._loaded if pred(self._loaded.obj) else None

    def start(self) -> "Fixed[T]":
        return self

    def stop(self) -> None:
        pass
