"""What every job shares: its record in the store, its run lock, progress as task state, cancellation.

The job record, ``<store>/jobs/<job id>.json``, says what the job was asked (kind, parameters), every attempt
(worker, process, start, how it ended), its state, its outputs (artifacts in the store: a dataset version, a
model card, a report) and its metrics. It is written atomically at each change of state, so it survives Redis.

A job body is a function ``body(ctx, **params) -> {"outputs": {...}, "metrics": {...}}``; it reports progress
with ``ctx.progress(done, total, ...)`` (which also notices a cancellation) and may keep resumable state in
``ctx.work_dir`` (a folder of the store that belongs to this job until it finishes).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import traceback
import uuid
from pathlib import Path
from typing import Any, Callable

import redis
from celery import states
from celery.exceptions import Ignore

from iznet.errors import IZNetError, PreconditionError
from iznet.store import ArtifactStore, atomic_write_json
from training.jobs import keys, settings

PROGRESS = "PROGRESS"


class JobCancelled(Exception):
    """Raised inside a job at its next progress report once ``iznet jobs cancel`` was asked."""


def utcnow() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def record_path(store_root: str | os.PathLike[str], job_id: str) -> Path:
    return Path(store_root).expanduser() / "jobs" / f"{job_id}.json"


def read_record(store_root: str | os.PathLike[str], job_id: str) -> dict[str, Any] | None:
    try:
        return json.loads(record_path(store_root, job_id).read_text())
    except FileNotFoundError:
        return None


class JobContext:
    def __init__(self, task, kind: str, params: dict[str, Any]):
        self.task = task
        self.kind = kind
        self.job_id: str = task.request.id
        self.params = params
        self.store = ArtifactStore(params.get("store") or settings.store_root())
        self.record_file = record_path(self.store.root, self.job_id)
        self.redis = redis.Redis.from_url(settings.redis_url())
        self.lock_value = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.ttl = settings.lock_ttl()
        self.record: dict[str, Any] = {}
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self._started = time.monotonic()
        self._phase: tuple[str | None, float, int] = (None, self._started, 0)  # (phase, since, done then)
        self._last_update = 0.0
        self._device: str | None = None

    # -------------------------------------------------------------------------------------------- record

    def save(self) -> None:
        atomic_write_json(self.record_file, self.record)

    @property
    def work_dir(self) -> Path:
        """A folder in the store for this job's resumable state (checkpoints); kept across redeliveries."""
        d = self.store.root / "jobs" / f"{self.job_id}.work"
        d.mkdir(parents=True, exist_ok=True)
        return d

    @property
    def device(self) -> str:
        if self._device is None:
            from training.jobs.celery_app import device_description

            self._device = device_description()[0]
        return self._device

    # ------------------------------------------------------------------------------------------ lifecycle

    def _acquire(self) -> None:
        """Take the run lock; while another live process holds it (a duplicate delivery), wait."""
        waited = False
        while not self.redis.set(keys.lock(self.job_id), self.lock_value, nx=True, px=int(self.ttl * 1000)):
            waited = True
            self._break_dead_local_lock()
            time.sleep(min(1.0, self.ttl / 4))
        if waited:
            self.record = read_record(self.store.root, self.job_id) or self.record
        self._heartbeat = threading.Thread(target=self._beat, name=f"heartbeat-{self.job_id}", daemon=True)
        self._heartbeat.start()

    def _break_dead_local_lock(self) -> None:
        """A lock held by a process of this host that no longer exists (a pool process killed; Celery gave the
        job back at once) need not run out its time to live."""
        key = keys.lock(self.job_id)
        holder = self.redis.get(key)
        if not holder:
            return
        text = holder.decode()
        if not text.startswith("done:"):  # a finished run's lock is free to take at once
            host, _, rest = text.partition(":")
            pid = rest.split(":", 1)[0]
            if host != socket.gethostname() or not pid.isdigit():
                return
            try:
                os.kill(int(pid), 0)
                return  # alive
            except ProcessLookupError:
                pass
            except PermissionError:
                return
        self.redis.eval("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end "
                        "return 0", 1, key, holder)

    def _beat(self) -> None:
        key = keys.lock(self.job_id)
        while not self._stop.wait(self.ttl / 4):
            try:
                if self.redis.get(key) in (self.lock_value.encode(), None):
                    self.redis.set(key, self.lock_value, px=int(self.ttl * 1000))
            except redis.RedisError:
                pass  # Redis away for a moment; the next beat tries again

    def _release(self) -> None:
        """Mark the lock done rather than delete it: Celery acknowledges the message only after this returns,
        and until then the recovery sweep must not take the finished job for an orphan. It expires by itself."""
        self._stop.set()
        try:
            self.redis.eval("if redis.call('GET', KEYS[1]) == ARGV[1] then "
                            "return redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end return 0",
                            1, keys.lock(self.job_id), self.lock_value, "done:" + self.lock_value,
                            int(self.ttl * 2000))
        except redis.RedisError:
            pass

    def begin(self) -> dict[str, Any] | None:
        """Start (or resume) the job. Returns the stored result when the job already succeeded."""
        self._acquire()
        rec = read_record(self.store.root, self.job_id)
        if rec and rec.get("state") == states.SUCCESS and rec.get("result") is not None:
            return rec["result"]
        submitted = self._submitted()
        self.record = rec or {
            "id": self.job_id,
            "kind": self.kind,
            "task": self.task.name,
            "params": self.params,
            "submitted_at": submitted.get("submitted_at"),
            "idempotency_key": submitted.get("key"),
            "attempts": [],
            "outputs": {},
            "metrics": {},
        }
        for attempt in self.record["attempts"]:
            attempt.setdefault("ended", "worker lost (redelivered)")
        self.record["attempts"].append({
            "n": len(self.record["attempts"]) + 1,
            "worker": self.task.request.hostname,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "queue": (self.task.request.delivery_info or {}).get("routing_key"),
            "redelivered": bool((self.task.request.delivery_info or {}).get("redelivered")),
            "started_at": utcnow(),
        })
        self.record.update(state=states.STARTED, started_at=self.record.get("started_at") or utcnow(), error=None)
        self.save()
        if len(self.record["attempts"]) > settings.max_attempts():
            raise PreconditionError(
                f"job {self.job_id} was started {len(self.record['attempts'])} times and its worker was lost "
                f"each time (more than IZNET_JOBS_MAX_ATTEMPTS={settings.max_attempts()}); giving up")
        self.check_cancelled()
        self.progress(0, None, phase="starting")
        return None

    def _submitted(self) -> dict[str, Any]:
        try:
            raw = self.redis.get(keys.job(self.job_id))
            return json.loads(raw) if raw else {}
        except (redis.RedisError, ValueError):
            return {}

    def _end(self, state: str, how: str, **fields: Any) -> None:
        now = utcnow()
        self.record["attempts"][-1].update(ended=how, ended_at=now)
        self.record.update(state=state, finished_at=now, **fields)
        self.save()

    def succeed(self, out: dict[str, Any]) -> dict[str, Any]:
        outputs = out.get("outputs", {})
        metrics = out.get("metrics", {})
        result = {"job": self.job_id, "kind": self.kind, "state": states.SUCCESS, "outputs": outputs,
                  "metrics": metrics, "record": str(self.record_file)}
        self._end(states.SUCCESS, "succeeded", outputs=outputs, metrics=metrics, result=result)
        return result

    def fail(self, exc: BaseException) -> None:
        detail = str(exc) if isinstance(exc, IZNetError) else f"{type(exc).__name__}: {exc}"
        self._end(states.FAILURE, "failed", error=detail,
                  traceback=None if isinstance(exc, IZNetError) else traceback.format_exc(limit=20))

    def cancelled(self, how: str = "cancelled") -> None:
        self._end(states.REVOKED, how, error="cancelled by request")

    # ------------------------------------------------------------------------------------------- progress

    def check_cancelled(self) -> None:
        if self.redis.exists(keys.cancel(self.job_id)):
            raise JobCancelled(self.job_id)

    def progress(self, done: int, total: int | None, *, phase: str | None = None, unit: str = "items",
                 metric: dict[str, Any] | None = None, force: bool = False, **extra: Any) -> None:
        """Report progress as task state PROGRESS (at most twice a second unless ``force``): items done of
        total, rate, ETA, the current metric. Raises :class:`JobCancelled` when the job was cancelled."""
        now = time.monotonic()
        last = total is not None and done >= total
        if not (force or last or now - self._last_update >= 0.5):
            return
        self._last_update = now
        self.check_cancelled()
        elapsed = now - self._started
        if self._phase[0] != phase:  # the rate (and ETA) of a phase counts from its first report
            self._phase = (phase, now, done)
        _, since, done0 = self._phase
        rate = (done - done0) / (now - since) if now > since and done > done0 else 0.0
        eta = (total - done) / rate if rate > 0 and total is not None else None
        meta = {"job": self.job_id, "kind": self.kind, "phase": phase or self.kind, "done": done, "total": total,
                "unit": unit, "rate": round(rate, 3), "eta_s": None if eta is None else round(eta, 1),
                "elapsed_s": round(elapsed, 1), "metric": metric or {},
                "attempt": len(self.record.get("attempts", [])), **extra}
        # task_id given: Celery's request is thread-local, and trainers report from a follower thread.
        self.task.update_state(task_id=self.job_id, state=PROGRESS, meta=meta)
        # The last report stays in the record (saved when the job ends): a job that finished between two
        # looks of a follower still shows where it ended.
        self.record["progress"] = meta


def _cancel_requested(ctx: JobContext) -> bool:
    try:
        return bool(ctx.redis.exists(keys.cancel(ctx.job_id)))
    except redis.RedisError:
        return False


def run_job(task, kind: str, body: Callable[..., dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
    ctx = JobContext(task, kind, params)
    try:
        previous = ctx.begin()
        if previous is not None:
            return previous
        body_params = {k: v for k, v in params.items() if k != "store"}
        return ctx.succeed(body(ctx, **body_params))
    except JobCancelled:
        ctx.cancelled()
        task.backend.mark_as_revoked(ctx.job_id, reason="cancelled by request", request=task.request)
        raise Ignore() from None
    except BaseException as exc:
        if ctx.record:
            if _cancel_requested(ctx):  # stopped by `iznet jobs cancel` terminating the process
                ctx.cancelled(f"cancelled ({type(exc).__name__})")
            else:
                ctx.fail(exc)
        raise
    finally:
        ctx._release()
