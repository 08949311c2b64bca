"""Jobs: long work (dataset building, training, analysis, evaluation, gallery re-indexing) as Celery tasks
with Redis as broker and result backend.

- :mod:`training.jobs.settings`  knobs from the environment (``IZNET_REDIS_URL``, timeouts)
- :mod:`training.jobs.celery_app`  the Celery app (``celery -A training.jobs.celery_app worker -Q cpu,gpu``)
- :mod:`training.jobs.runtime`  what every task shares: the job record, the run lock, progress, cancellation
- :mod:`training.jobs.tasks`  the tasks, one per job kind
- :mod:`training.jobs.client`  submit, status, list, cancel (used by ``iznet jobs``); imports no torch
- :mod:`training.jobs.recovery`  redelivers the jobs of killed workers without waiting for the visibility timeout
- :mod:`training.jobs.local`  a local ``redis-server`` for the embedded default (``iznet up``) and tests

The client side (this package's ``client`` and ``settings``) needs only celery and redis; the tasks import the
core (torch, OpenCV) when they run.
"""
