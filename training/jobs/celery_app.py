"""The Celery app: Redis as broker and result backend, JSON only, one job at a time per worker process.

Run a worker with::

    celery -A training.jobs.celery_app worker -Q cpu,gpu -c 1 --pool prefork     # or: iznet jobs worker

- ``task_acks_late`` + ``task_reject_on_worker_lost``: a job is acknowledged only when it has finished, so a
  worker process that dies mid-job gives it back (at once when only the pool process died; through
  :mod:`training.jobs.recovery` when the whole worker died).
- ``worker_prefetch_multiplier=1``: a worker holds no job it is not running (a long job never blocks others).
- The visibility timeout is longer than the longest job, so Redis never hands a running job to a second worker.
- Queues ``cpu`` (dataset, analysis, evaluation, re-index) and ``gpu`` (training): a worker serves the queues
  given with ``-Q``, says at start which device it will use, and uses a GPU when it has one.
"""

from __future__ import annotations

import logging
import os
import threading

from celery import Celery, signals
from kombu import Queue

from training.jobs import settings

log = logging.getLogger("iznet.jobs")

#: Task name per job kind, and the queue it goes to by default.
TASKS = {
    "dataset": ("iznet.jobs.dataset", "cpu"),
    "train-detector": ("iznet.jobs.train_detector", "gpu"),
    "train-embedder": ("iznet.jobs.train_embedder", "gpu"),
    "analyze": ("iznet.jobs.analyze", "cpu"),
    "evaluate": ("iznet.jobs.evaluate", "cpu"),
    "reindex": ("iznet.jobs.reindex", "cpu"),
}


def make_app(redis_url: str | None = None) -> Celery:
    url = redis_url or settings.redis_url()
    vt = settings.visibility_timeout()
    app = Celery("iznet", broker=url, backend=url)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        event_serializer="json",
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_deduplicate_successful_tasks=True,  # a redelivered job that already succeeded is not run again
        task_track_started=True,
        result_extended=True,  # the result keeps the task name, args and queue (for `iznet jobs status`)
        result_expires=int(settings.result_expires()),
        broker_transport_options={"visibility_timeout": vt},
        result_backend_transport_options={"visibility_timeout": vt},
        broker_connection_retry_on_startup=True,
        task_queues=[Queue(q, routing_key=q) for q in settings.QUEUES],
        task_default_queue="cpu",
        task_routes={name: {"queue": queue} for name, queue in TASKS.values()},
        worker_send_task_events=False,
        task_send_sent_event=False,
    )
    return app


app = make_app()
app.conf.imports = ["training.jobs.tasks"]


def device_description() -> tuple[str, str]:
    """(device, human text): ``cuda`` with the GPU's name when torch sees one, else ``cpu``."""
    try:
        import torch

        if torch.cuda.is_available():
            return "cuda", f"GPU {torch.cuda.get_device_name(0)} (cuda, {torch.cuda.device_count()} device(s))"
        return "cpu", f"CPU only (torch {torch.__version__} sees no GPU), {os.cpu_count()} cores"
    except Exception as exc:  # noqa: BLE001 - a worker without torch still runs dataset jobs
        return "cpu", f"CPU only (torch unavailable: {exc})"


@signals.worker_ready.connect
def _announce(sender=None, **_kwargs) -> None:
    queues = sorted(sender.app.amqp.queues.consume_from) if sender is not None else []
    msg = f"iznet worker ready: queues {','.join(queues) or '?'}; broker {_redacted(settings.redis_url())}"
    log.warning(msg)
    print(msg, flush=True)
    from training.jobs.recovery import start_recovery_thread

    threading.Thread(target=start_recovery_thread, args=(settings.redis_url(),), daemon=True).start()
    threading.Thread(target=_announce_device, daemon=True).start()  # importing torch takes seconds


def _announce_device() -> None:
    _device, text = device_description()
    msg = f"iznet worker device: {text}"
    log.warning(msg)
    print(msg, flush=True)


def _redacted(url: str) -> str:
    if "@" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
