"""Sending a step's task: its ledger entry first, then the message; or, for later, into the
scheduled set in Redis.

The customer and transaction steps go through ``send_step``, so each has a ledger entry
before its message exists (worker/adapters/task_ledger.py explains why); the receiver and
reconcile write theirs in the same Lua call that queues the message (adapters/pending.py).
Anything that must run later (a retry, a batch window, a lease check) goes through
``send_later``: it waits in the scheduled set (worker/adapters/scheduled.py), never as a
countdown inside a worker, so a worker killed meanwhile strands nothing.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import replace
from typing import Any

from celery import Task
from celery.result import AsyncResult

from worker import bootstrap
from worker.adapters.broker import TaskMessages, queue_key, queue_of
from worker.adapters.scheduled import ScheduledSteps, Waiting
from worker.adapters.task_ledger import LedgerEntry, TaskLedger
from worker.tasks.celery_app import app

__all__ = ["queue_of", "send_later", "send_step"]

_messages: TaskMessages | None = None


def _task_messages() -> TaskMessages:
    global _messages
    if _messages is None:  # built on first use: it reads celeryconfig
        _messages = TaskMessages()
    return _messages


def send_step(task: Task | str, kwargs: dict[str, Any]) -> AsyncResult:
    """Send a tracked step now: its ledger entry first, then its message. ``task``: the task,
    or its name (for a module the task's own module imports)."""
    settings, client = bootstrap.settings_and_redis()
    task_id = str(uuid.uuid4())
    name = task if isinstance(task, str) else task.name
    entry = LedgerEntry(name, queue_of(name), kwargs)
    TaskLedger(client).record(task_id, entry, time.time() + settings.lost_task_after_seconds)
    if isinstance(task, str):
        return app.send_task(name, kwargs=kwargs, task_id=task_id, queue=queue_of(name))
    return task.apply_async(kwargs=kwargs, task_id=task_id)


def send_later(task_name: str, kwargs: dict[str, Any], delay: float, *,
               task_id: str | None = None, waiting: Waiting | None = None,
               tracked: bool = False, ignore_result: bool = True) -> str:
    """Queue ``task_name(**kwargs)`` in ``delay`` seconds through the scheduled set.

    ``task_id``: keep an id (a retry is the same task, so whoever waits on its result still
    gets it). ``waiting``: what ``status`` shows of a retry. ``tracked``: a customer or
    transaction step, whose ledger entry is rewritten with these arguments in the same call.
    """
    settings, client = bootstrap.settings_and_redis()
    task_id, queue, message = _task_messages().build(
        task_name, kwargs, task_id=task_id, ignore_result=ignore_result)
    due = time.time() + max(0.0, delay)
    if waiting is not None and waiting.task_id != task_id:
        waiting = replace(waiting, task_id=task_id)
    ScheduledSteps(client).schedule(
        task_id, queue_key(queue), message, due, waiting=waiting,
        ledger=LedgerEntry(task_name, queue, kwargs) if tracked else None,
        ledger_due_at=due + settings.lost_task_after_seconds)
    return task_id
