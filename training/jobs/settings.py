"""Job settings from the environment, read when asked (so a test or ``iznet up`` can set them first)."""

from __future__ import annotations

import os
from pathlib import Path

from iznet.errors import UserInputError

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

#: Queues: ``gpu`` for training, ``cpu`` for everything else.
QUEUES = ("cpu", "gpu")


def _number(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    if raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise UserInputError(f"{name}={raw!r}: expected a number of seconds") from None
    if value <= 0:
        raise UserInputError(f"{name}={raw!r}: must be positive")
    return value


def redis_url() -> str:
    """Broker and result backend: ``$IZNET_REDIS_URL`` (default a local redis-server on 6379, database 0)."""
    return os.environ.get("IZNET_REDIS_URL") or DEFAULT_REDIS_URL


def visibility_timeout() -> float:
    """Seconds an unacknowledged job stays with the worker that took it before Redis hands it to another.
    Must be longer than the longest job (a training run), or a running job would be delivered twice; the
    jobs of a killed worker come back sooner through :mod:`training.jobs.recovery`. Default 24 h."""
    return _number("IZNET_JOBS_VISIBILITY_TIMEOUT", 24 * 3600.0)


def lock_ttl() -> float:
    """Seconds a running job's lock lives without a heartbeat. A worker renews it every ttl/4 while the job
    runs; once a killed worker's lock has expired its job is redelivered. Default 60 s."""
    return _number("IZNET_JOBS_LOCK_TTL", 60.0)


def max_attempts() -> int:
    """How many times one job may be started (first run plus redeliveries) before it is failed for good,
    so a job that kills its worker (e.g. out of memory) cannot loop forever. Default 5."""
    return int(_number("IZNET_JOBS_MAX_ATTEMPTS", 5))


def result_expires() -> float:
    """Seconds Redis keeps a finished job's state (the job record in the store stays). Default 30 days."""
    return _number("IZNET_JOBS_RESULT_EXPIRES", 30 * 24 * 3600.0)


def store_root() -> Path:
    from iznet.config import load_settings

    return load_settings().store
