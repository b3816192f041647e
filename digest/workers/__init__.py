"""The workers stage: delivery as Celery tasks on RabbitMQ, for sends that outgrow one machine.

With ``settings.queue`` set (and a PostgreSQL ledger), ``digest send`` / ``digest run`` hand
each due (subscriber, edition) to the broker (``enqueue_run``) and ``digest worker`` processes
on any machine deliver them (``run_worker``), each task calling ``deliver_edition`` unchanged
after an atomic claim in the ledger. Edge (broker, PostgreSQL). May import: models, errors,
cron, compose, ledger, selection, render, delivery.
"""

from __future__ import annotations

from digest.workers._app import LEASE, TIME_LIMIT, Job, make_app, queue_name
from digest.workers._enqueue import QueueReport, QueueSender, enqueue_run, publish
from digest.workers._reconcile import REQUEUE_AFTER, RETRY_AFTER, reconcile_once
from digest.workers._task import WorkerContext, run_job
from digest.workers._worker import run_worker

__all__ = ["LEASE", "REQUEUE_AFTER", "RETRY_AFTER", "TIME_LIMIT", "Job", "QueueReport",
           "QueueSender", "WorkerContext", "enqueue_run", "make_app", "publish", "queue_name",
           "reconcile_once", "run_job", "run_worker"]
