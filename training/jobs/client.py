"""Submit, look at, follow and cancel jobs (``iznet jobs``). Needs Redis, celery and redis-py; imports no torch.

A job's status merges three sources: what was submitted (Redis ``iznet:job:<id>``), Celery's task state and
progress (the result backend), and the job record in the store (inputs, attempts, outputs, metrics), which
outlives Redis.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import redis
from celery import states

from iznet.errors import NotFoundError, PreconditionError, UserInputError
from training.jobs import keys, settings
from training.jobs.celery_app import TASKS, make_app
from training.jobs.runtime import read_record

FINISHED = frozenset({states.SUCCESS, states.FAILURE, states.REVOKED})

_CAS = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) return 1 end
return 0
"""


def file_digest(path: str | Path, n: int = 16) -> str:
    """sha256 of a file (or of a folder's ``model.pt``/``model.json``), the first ``n`` hex digits."""
    p = Path(path)
    files = [p] if p.is_file() else [f for f in (p / "model.pt", p / "model.json") if f.is_file()]
    if not files:
        return hashlib.sha256(str(path).encode()).hexdigest()[:n]
    h = hashlib.sha256()
    for f in files:
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:n]


class Jobs:
    def __init__(self, redis_url: str | None = None, store: str | Path | None = None):
        self.url = redis_url or settings.redis_url()
        self.store = Path(store).expanduser() if store else settings.store_root()
        self.redis = redis.Redis.from_url(self.url, socket_connect_timeout=3)
        self._app = None

    @property
    def app(self):
        if self._app is None:
            self._app = make_app(self.url)
        return self._app

    def ping(self) -> None:
        try:
            self.redis.ping()
        except redis.RedisError as exc:
            raise PreconditionError(
                f"cannot reach Redis at {self.url} ({exc}). Start one (`iznet jobs redis`, or `redis-server`), "
                "or point IZNET_REDIS_URL / --redis-url at yours") from None

    # --------------------------------------------------------------------------------------------- submit

    def submit(self, kind: str, params: dict[str, Any], *, queue: str | None = None,
               key: str | None = None) -> tuple[str, bool]:
        """Queue a job; returns (job id, whether it is new). With an idempotency ``key``, a job with the same
        key that is queued, running or succeeded is returned instead of a second one (a failed or cancelled
        one is replaced)."""
        if kind not in TASKS:
            raise UserInputError(f"unknown job kind {kind!r}; one of {', '.join(TASKS)}")
        task_name, default_queue = TASKS[kind]
        queue = queue or default_queue
        if queue not in settings.QUEUES:
            raise UserInputError(f"unknown queue {queue!r}; one of {', '.join(settings.QUEUES)}")
        self.ping()
        job_id = uuid.uuid4().hex
        if key is not None:
            idem = keys.idempotency(key)
            for _ in range(10):
                if self.redis.set(idem, job_id, nx=True):
                    break
                old = self.redis.get(idem)
                if old is None:
                    continue
                old = old.decode()
                if self.state(old) not in (states.FAILURE, states.REVOKED):
                    return old, False
                if self.redis.eval(_CAS, 1, idem, old, job_id):
                    break
            else:
                raise PreconditionError(f"could not claim idempotency key {key!r}; try again")
        params = {**params, "store": str(self.store)}
        info = {"id": job_id, "kind": kind, "task": task_name, "queue": queue, "params": params, "key": key,
                "submitted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        pipe = self.redis.pipeline()
        pipe.set(keys.job(job_id), json.dumps(info), ex=int(settings.result_expires()))
        pipe.zadd(keys.JOBS, {job_id: time.time()})
        pipe.execute()
        self.app.send_task(task_name, kwargs=params, task_id=job_id, queue=queue)
        return job_id, True

    # --------------------------------------------------------------------------------------------- status

    def _submitted(self, job_id: str) -> dict[str, Any] | None:
        raw = self.redis.get(keys.job(job_id))
        return json.loads(raw) if raw else None

    def state(self, job_id: str) -> str:
        return self.status(job_id)["state"]

    def status(self, job_id: str) -> dict[str, Any]:
        submitted = self._submitted(job_id)
        store = Path(submitted["params"]["store"]) if submitted else self.store
        record = read_record(store, job_id)
        meta = self.app.backend.get_task_meta(job_id)
        state = meta.get("status", states.PENDING)
        if submitted is None and record is None and state == states.PENDING:
            raise NotFoundError(f"no job {job_id!r} (see `iznet jobs list`)")
        if state == states.PENDING and record and record.get("state") in FINISHED:
            state = record["state"]  # Redis forgot it; the record remembers
        out: dict[str, Any] = {
            "id": job_id,
            "kind": (submitted or record or {}).get("kind"),
            "queue": (submitted or {}).get("queue"),
            "state": state,
            "submitted_at": (submitted or record or {}).get("submitted_at"),
            "params": {k: v for k, v in ((submitted or record or {}).get("params") or {}).items() if k != "store"},
            "record": str(Path(store) / "jobs" / f"{job_id}.json") if record else None,
            "attempts": len(record.get("attempts", [])) if record else 0,
        }
        result = meta.get("result")
        if state in (states.STARTED, "PROGRESS"):
            out["progress"] = result if isinstance(result, dict) else {}
            # PROGRESS is first reported once the run lock is held; a lock gone while the record is not
            # finished means the worker died (its job comes back through training.jobs.recovery).
            if (state == "PROGRESS" and not self.redis.exists(keys.lock(job_id))
                    and (read_record(store, job_id) or {}).get("state") not in FINISHED):
                out["note"] = "its worker is gone; waiting for redelivery"
        elif state == states.SUCCESS:
            res = result if isinstance(result, dict) else (record or {}).get("result") or {}
            out["outputs"] = res.get("outputs", {})
            out["metrics"] = res.get("metrics", {})
        elif state in (states.FAILURE, states.REVOKED):
            out["error"] = (record or {}).get("error") or (str(result) if result is not None else state.lower())
        if record:
            out["finished_at"] = record.get("finished_at")
            if state in FINISHED and record.get("progress"):
                out["progress"] = record["progress"]  # where it ended
        return out

    def list(self, limit: int = 20) -> list[dict[str, Any]]:
        ids = [i.decode() for i in self.redis.zrevrange(keys.JOBS, 0, limit - 1)]
        out = []
        for job_id in ids:
            try:
                out.append(self.status(job_id))
            except NotFoundError:
                self.redis.zrem(keys.JOBS, job_id)
        return out

    def follow(self, job_id: str, poll: float = 0.5, timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """Statuses of a job until it finishes (the last one yielded is final)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            st = self.status(job_id)
            yield st
            if st["state"] in FINISHED:
                return
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {st['state']} after {timeout}s")
            time.sleep(poll)

    def wait(self, job_id: str, timeout: float | None = None, on_update: Callable | None = None) -> dict[str, Any]:
        st: dict[str, Any] = {}
        for st in self.follow(job_id, timeout=timeout):
            if on_update:
                on_update(st)
        return st

    # --------------------------------------------------------------------------------------------- cancel

    def cancel(self, job_id: str, grace: float = 5.0) -> dict[str, Any]:
        """Stop a job: queued, it never starts; running, it stops at its next progress report (within
        ``grace`` seconds, else its worker process is terminated). The cancel holds across redeliveries."""
        st = self.status(job_id)
        if st["state"] in FINISHED:
            return st
        self.redis.set(keys.cancel(job_id), "1", ex=int(settings.result_expires()))
        self.app.control.revoke(job_id)
        if st["state"] == states.PENDING:
            self.app.backend.mark_as_revoked(job_id, reason="cancelled before it started")
            return self.status(job_id)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            st = self.status(job_id)
            if st["state"] in FINISHED:
                return st
            time.sleep(0.2)
        self.app.control.revoke(job_id, terminate=True, signal="SIGTERM")
        time.sleep(1.0)
        return self.status(job_id)
