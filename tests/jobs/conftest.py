"""Real Redis and real Celery workers for the job tests: a ``redis-server`` on a free loopback port, workers as
``celery -A training.jobs.celery_app worker`` child processes (each in its own process group, so a test can
SIGKILL a whole worker, pool processes included)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from iznet.synthetic import make_people

LOCK_TTL = "2"  # seconds: a killed worker's job is redelivered 2 x 2 s after it was taken, at the earliest


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    from iznet.errors import PreconditionError
    from training.jobs.local import redis_server_binary, start_redis

    try:
        redis_server_binary()
    except PreconditionError as exc:
        pytest.skip(str(exc))

    proc, url = start_redis(data_dir=tmp_path_factory.mktemp("redis"))
    yield url
    proc.kill()
    proc.wait()


@pytest.fixture
def store(tmp_path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def env(redis_url, store, monkeypatch) -> dict[str, str]:
    values = {"IZNET_REDIS_URL": redis_url, "IZNET_STORE": str(store), "IZNET_JOBS_LOCK_TTL": LOCK_TTL,
              "OMP_NUM_THREADS": "1"}
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    import redis as redis_py

    redis_py.Redis.from_url(redis_url).flushdb()  # each test starts with empty queues
    return values


class Worker:
    def __init__(self, proc: subprocess.Popen, log: Path):
        self.proc, self.log = proc, log

    def kill(self) -> None:
        """SIGKILL the whole worker (main process and pool processes), like a node dying."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)

    def pool_pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@pytest.fixture
def start_worker(env, tmp_path):
    from training.jobs.local import start_worker as spawn

    started: list[Worker] = []

    def start(queues: str = "cpu,gpu", name: str | None = None) -> Worker:
        n = len(started) + 1
        log = tmp_path / f"worker{n}.log"
        proc = spawn(env["IZNET_REDIS_URL"], queues=queues, hostname=f"{name or 'w' + str(n)}@%h", env=env, log=log)
        w = Worker(proc, log)
        started.append(w)
        deadline = time.monotonic() + 60
        while "iznet worker ready" not in w.text():
            if proc.poll() is not None or time.monotonic() > deadline:
                w.kill()
                raise AssertionError(f"worker did not start:\n{w.text()[-3000:]}")
            time.sleep(0.1)
        return w

    yield start
    for w in started:
        w.kill()


@pytest.fixture(scope="session")
def photos(tmp_path_factory) -> Path:
    """Generated people (OpenCV's Haar cascade finds most of their faces): 8 people x 5 photos."""
    root = tmp_path_factory.mktemp("people")
    make_people(root, people=8, photos=5, seed=3, size=128)
    return root


@pytest.fixture(scope="session")
def face_crops(tmp_path_factory):
    """Aligned-looking face crops of 8 generated people (4 drawings each, many cheap variations of them)."""
    import numpy as np

    from iznet.synthetic import draw_face, make_person

    rng = np.random.default_rng(5)
    people = {f"P{i}": [draw_face(p, rng, 128) for _ in range(4)]
              for i, p in enumerate(make_person(rng, f"P{i}") for i in range(8))}
    return people


def make_gallery(store: Path, name: str, crops: dict, n: int, model: str = "baseline-pixels") -> int:
    """A gallery of ``n`` exemplars with stored crops, built with ``model``; returns its version."""
    import numpy as np

    from iznet.gallery import GalleryStore
    from iznet.registry import create_embedder

    emb = create_embedder(model)
    gs = GalleryStore(store)
    g = gs.create(name, emb.version)
    names = sorted(crops)
    per = n // len(names)
    for k, person in enumerate(names):
        base = crops[person]
        batch = [np.clip(np.roll(base[i % len(base)], (i // len(base)) % 7 - 3, axis=1).astype(np.int16)
                         + (i % 11) - 5, 0, 255).astype(np.uint8) for i in range(per + (n % len(names) if k == 0 else 0))]
        g.add_exemplars(person, emb.embed(batch), batch)
    return gs.save(g, action="enroll")
