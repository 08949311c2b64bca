"""Redelivery of the jobs of a worker that was killed outright (SIGKILL, out of memory, a lost node).

Celery acknowledges a job only when it is done (``task_acks_late``), so a killed worker's job stays in Redis
as an unacknowledged message. Redis would hand it to another worker only after the visibility timeout, which
must be longer than the longest job (hours), or a running job would be delivered twice. Instead, every
running job holds a lock with a short time to live that its worker renews (a heartbeat). Each worker checks
now and then for unacknowledged messages that were taken more than ``2 x lock ttl`` ago and whose job holds no
lock: the worker that took them is gone, so they are put back at the head of their queue (with kombu's own
restore, the same one Celery uses at a clean shutdown). Two workers sweeping at once restore a message once:
kombu removes it from the unacknowledged set in one transaction.

A job delivered twice anyway (a sweep racing a slow start) is safe: the run lock lets one run at a time, and a
job whose record says it succeeded returns that result without running again.
"""

from __future__ import annotations

import json
import logging
import time

import redis

from training.jobs import keys, settings

log = logging.getLogger("iznet.jobs.recovery")


def _job_id(raw: bytes | str) -> str | None:
    try:
        message = json.loads(raw)[0]
    except (ValueError, IndexError, TypeError):
        return None
    headers = message.get("headers") or {}
    return headers.get("id") or (message.get("properties") or {}).get("correlation_id")


def recover_orphans(app, client: redis.Redis, lock_ttl: float | None = None) -> list[str]:
    """Put back the jobs of dead workers; returns their ids."""
    ttl = lock_ttl or settings.lock_ttl()
    cutoff = time.time() - 2 * ttl
    restored: list[str] = []
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        qos = channel.qos
        for tag in client.zrangebyscore(channel.unacked_index_key, 0, cutoff):
            raw = client.hget(channel.unacked_key, tag)
            if raw is None:
                continue
            job_id = _job_id(raw)
            if job_id is None or client.exists(keys.lock(job_id)):
                continue  # alive (its worker renews the lock), or not one of ours
            qos.restore_by_tag(tag.decode() if isinstance(tag, bytes) else tag, leftmost=True)
            restored.append(job_id)
            log.warning("job %s: its worker is gone (no heartbeat for %.0fs); redelivered", job_id, ttl)
    return restored


def start_recovery_thread(url: str, interval: float | None = None) -> None:
    """Loop forever (run it in a daemon thread of the worker's main process)."""
    from training.jobs.celery_app import make_app

    app = make_app(url)
    client = redis.Redis.from_url(url)
    pause = interval or max(0.5, min(30.0, settings.lock_ttl() / 2))
    while True:
        try:
            for job_id in recover_orphans(app, client):
                print(f"iznet worker: redelivered job {job_id} (its worker is gone)", flush=True)
        except Exception as exc:  # noqa: BLE001 - Redis away for a moment: try again later
            log.warning("orphan recovery failed: %s", exc)
        time.sleep(pause)
