"""Redis keys the jobs use besides Celery's own (all under ``iznet:``)."""

from __future__ import annotations

#: Sorted set of job ids by submission time (``iznet jobs list``).
JOBS = "iznet:jobs"


def job(job_id: str) -> str:
    """JSON of what was submitted: kind, params, queue, time, idempotency key."""
    return f"iznet:job:{job_id}"


def lock(job_id: str) -> str:
    """Held (with a heartbeat) by the worker process running the job; absent once that process is gone."""
    return f"iznet:job:{job_id}:lock"


def cancel(job_id: str) -> str:
    """Set by ``iznet jobs cancel``: the job stops at its next progress report, on any worker, even redelivered."""
    return f"iznet:job:{job_id}:cancel"


def idempotency(key: str) -> str:
    """Maps an idempotency key (e.g. ``reindex:<gallery>:<model digest>``) to the one job that does that work."""
    return f"iznet:jobs:key:{key}"
