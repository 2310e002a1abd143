"""Replay's enqueue: a dead-letter entry's step sent back through its own task
(worker/services/replay.py selects the entries and removes them once enqueued)."""

from __future__ import annotations

import time
import uuid

from worker import bootstrap
from worker.adapters.dead_letters import TRANSACTION_STEP
from worker.adapters.scheduled import ScheduledSteps
from worker.adapters.tombstones import Tombstones
from worker.services.replay import Entry, NotReplayable, task_call
from worker.tasks import consent, steps, transactions
from worker.tasks.dispatch import send_step


def run_waiting_retry_now(entry: Entry, task_name: str) -> str | None:
    """When the entry's step already waits in the scheduled set for a retry (it failed
    again after it was dead-lettered), make that retry due now instead of sending a second
    copy: the step runs once. Returns the waiting task's id, or None."""
    _, client = bootstrap.settings_and_redis()
    scheduled = ScheduledSteps(client)
    step = entry["step"]
    record = str(entry.get("transaction_id") if step == TRANSACTION_STEP
                 else entry.get("customer_id"))
    steps = [step] if task_name != "sync_customer" or step == "profile" else [step, "profile"]
    for candidate in steps:
        task_id = scheduled.run_now(candidate, record, time.time())
        if task_id:
            return task_id
    return None


def enqueue_replay(entry: Entry) -> str:
    """Enqueue the entry's step as a fresh task (a new retry budget); the tracking guid
    ``replay-…`` marks the run as a replay in the sync history. Returns the task id."""
    name, kwargs = task_call(entry)
    customer_id = entry.get("customer_id")
    if (name != "forget_customer" and customer_id
            and Tombstones(bootstrap.settings_and_redis()[1]).is_deleted(str(customer_id))):
        raise NotReplayable("the customer was deleted (tombstone)")
    waiting = run_waiting_retry_now(entry, name)
    if waiting is not None:
        return waiting
    module = {"sync_transaction": transactions, "forget_customer": consent}.get(name, steps)
    task = getattr(module, name)
    result = send_step(task, {**kwargs, "tracking_guid": f"replay-{uuid.uuid4()}"})
    return str(result.id)
