"""Sending a step's task: its ledger entry first, then the message.

The customer and transaction steps go through ``send_step``, so each has a ledger entry
before its message exists (worker/adapters/task_ledger.py explains why); the receiver and
reconcile write theirs in the same Lua call that queues the message (adapters/pending.py).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from celery import Task
from celery.result import AsyncResult

from worker import bootstrap
from worker.adapters.task_ledger import LedgerEntry, TaskLedger


def queue_of(task_name: str) -> str:
    import celeryconfig

    return str(celeryconfig.task_routes.get(task_name, {}).get("queue")
               or celeryconfig.task_default_queue)


def send_step(task: Task, kwargs: dict[str, Any], *, countdown: float | None = None
              ) -> AsyncResult:
    settings, client = bootstrap.settings_and_redis()
    task_id = str(uuid.uuid4())
    entry = LedgerEntry(task.name, queue_of(task.name), kwargs)
    due = time.time() + (countdown or 0.0) + settings.lost_task_after_seconds
    TaskLedger(client).record(task_id, entry, due)
    return task.apply_async(kwargs=kwargs, task_id=task_id, countdown=countdown)
