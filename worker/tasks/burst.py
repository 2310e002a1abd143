"""Burst mode's tasks: a backlog of customers goes to Klaviyo in profile bulk import jobs.

The switch: ``sync_customer`` asks ``goes_to_burst`` before it writes. With more than
BURST_THRESHOLD customers waiting (queued syncs, customers waiting for a job or in flight)
the fleet switches on; below half of it, off (worker/core/burst.py); flushes switch it too.
While it is on, a sync leaves its customer id in Redis (worker/adapters/burst_buffer.py)
instead of upserting, and each flush drains the queued syncs into the same place in bulk
(worker/adapters/burst_drain.py). A sync's
task is acknowledged, but its ledger entry stays open until the batch records its outcome,
so the lost-task sweep still protects the customer.

A batch is a chain of short steps, each well inside the task time limit, each checkpointed
in Redis and owned through a lease: ``flush_burst`` takes up to one job of waiting
customers; ``burst_step`` gathers them (worker/tasks/burst_gather.py: the live path's fetch, map,
validation and fingerprint check), submits the job, polls it (rescheduled through the
scheduled set, never waiting in a worker) and records the outcomes in slices
(worker/tasks/burst_job.py, worker/tasks/burst_outcomes.py). A worker killed mid-step leaves
the lease to run out; the lost-task sweep (worker/tasks/lost_tasks.py) then gives the batch's
current step to another worker, which resumes from the checkpoint. Submitting a job twice
is an upsert of the same rows: nothing is doubled in Klaviyo.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

from celery import Task

from worker import bootstrap
from worker.adapters.burst_buffer import BurstBuffer
from worker.adapters.burst_drain import drain_syncs
from worker.adapters.pending import CUSTOMER, PendingSyncs
from worker.adapters.step_deadline import step_deadline
from worker.adapters.task_ledger import TaskLedger
from worker.core.burst import (
    MAX_PROFILES_PER_JOB,
    WaitingSync,
    next_mode,
)
from worker.core.retry import Done, GiveUp, RetryIn, attempt
from worker.tasks.burst_gather import gather
from worker.tasks.burst_job import (
    finished,
    poll,
    schedule_flush,
    settle,
    submit,
)
from worker.tasks.burst_outcomes import fall_back, fall_back_syncs
from worker.tasks.celery_app import app
from worker.tasks.dispatch import send_later
from worker.tasks.names import BURST_STEP, FLUSH_BURST, SYNC_CUSTOMER

logger = logging.getLogger("ipaas_klaviyo.burst")

SUBMIT_SECONDS = 15.0  # what a step keeps in hand to submit a job (up to 5 MB, a limiter wait)
DRAIN_CHUNK, DRAIN_ROUNDS = 1_000, 20  # up to two jobs' worth per flush

PROFILES_QUEUE = "profiles"
# A buffered customer's ledger entry is looked for this long after its batch last moved:
# the batch's own leases resume it long before; this is the net under the net.
LEDGER_HOLD_SECONDS = 600.0
STEP_DEADLINE_MARGIN_SECONDS = 5.0


def burst_buffer(c: bootstrap.Container) -> BurstBuffer:
    return BurstBuffer(c.redis)


def lease_seconds(c: bootstrap.Container) -> float:
    """A step owns its batch longer than any task may run: when the lease ends, it died."""
    return c.settings.task_hard_time_limit_seconds + 5.0


# -- the switch ---------------------------------------------------------------------------


def goes_to_burst(c: bootstrap.Container, customer_id: str) -> bool:
    """Whether this customer's profile waits for a bulk import job: burst mode is on (this
    call switches it as the backlog says), or an older change of the customer is still
    waiting for or flying in a job, which a single write now would then overwrite."""
    threshold = c.settings.burst_threshold
    if threshold <= 0:
        return False
    buffer = burst_buffer(c)
    on, backlog, held = buffer.mode_and_backlog(PROFILES_QUEUE, customer_id)
    # A sync only switches on; flushes (every few seconds while it is on) switch off, so a
    # sync running while a flush moves the queue does not end the burst mid-way.
    return _switch(c, buffer, on, backlog, may_end=False) or held


def _switch(c: bootstrap.Container, buffer: BurstBuffer, on: bool, backlog: int, *,
            may_end: bool = True) -> bool:
    threshold = c.settings.burst_threshold
    wanted = next_mode(on, backlog, threshold)
    if on and not wanted and not may_end and threshold > 0:
        return True
    if wanted != on and buffer.set_mode(wanted):
        logger.warning(json.dumps({"burst_mode": "on" if wanted else "off", "backlog": backlog,
                                   "threshold": threshold}))
        c.metrics.incr("burst_switches_total", {"to": "on" if wanted else "off"})
        if wanted:  # the first flush drains the backlog off the queue
            flush_burst.apply_async()
    return wanted


def _drain_queue(c: bootstrap.Container, buffer: BurstBuffer) -> None:
    """Move queued customer syncs into the buffer in bulk: in burst mode a queued sync
    would only do that itself, one task each. Their ledger entries stay open (postponed),
    and each customer's pending marker is cleared as its task would clear it on starting,
    so a change from now on queues a new sync: the last change wins."""
    ledger, pending = TaskLedger(c.redis), PendingSyncs(c.redis)
    for _ in range(DRAIN_ROUNDS):
        syncs = drain_syncs(c.redis, buffer, PROFILES_QUEUE, SYNC_CUSTOMER, DRAIN_CHUNK,
                            time.time())
        if not syncs:
            return
        pipe = c.redis.pipeline(transaction=False)
        for sync in syncs:
            pipe.delete(pending.key(CUSTOMER, sync.customer_id))
            pipe.zadd(ledger.due_key, {sync.task_id: time.time() + LEDGER_HOLD_SECONDS},
                      xx=True)
        pipe.execute()
        c.metrics.incr("burst_drained_total", {}, len(syncs))


def hand_to_burst(c: bootstrap.Container, sync: WaitingSync) -> None:
    """Leave the customer for the next job and make sure a flush will take it."""
    buffer = burst_buffer(c)
    waiting = buffer.add(sync)
    TaskLedger(c.redis).postpone(sync.task_id, time.time() + LEDGER_HOLD_SECONDS)
    if waiting % MAX_PROFILES_PER_JOB == 0:  # a full job waits: no reason to wait longer
        flush_burst.apply_async()
    else:
        schedule_flush(buffer)



# -- the steps ----------------------------------------------------------------------------


@app.task(bind=True, name=FLUSH_BURST, max_retries=None)
def flush_burst(self: Task) -> dict[str, Any]:
    """Take one job's worth of waiting customers and submit it; flush again if more wait."""
    c = bootstrap.container()
    buffer = burst_buffer(c)
    buffer.release_flush()
    on, backlog, _ = buffer.mode_and_backlog(PROFILES_QUEUE)
    # Switch here too: after a burst no sync may come to switch the fleet back.
    if _switch(c, buffer, on, backlog):
        _drain_queue(c, buffer)
    candidates = buffer.peek(MAX_PROFILES_PER_JOB)
    if not candidates:
        # What waits is a newer change of customers still in flight: look again shortly.
        if buffer.waiting():
            schedule_flush(buffer)
        return {"batch": None}
    token = uuid.uuid4().hex
    batch_id, rows = buffer.take(candidates, lease_seconds(c), token)
    if rows:
        ledger = TaskLedger(c.redis)
        for row in rows:
            ledger.postpone(row.task_id, time.time() + LEDGER_HOLD_SECONDS)
        c.metrics.incr_many([("burst_batches_total", {}, 1),
                             ("burst_batch_customers_total", {}, len(rows))])
        buffer.note_batch(len(rows))
        logger.info(json.dumps({"burst_batch": batch_id, "customers": len(rows)}))
    # While burst mode is on, flushes keep draining the queue; after it, what still waits.
    if buffer.waiting() or buffer.mode():
        schedule_flush(buffer)
    if rows:
        _run_step(c, buffer, batch_id, token)
    return {"batch": batch_id, "customers": len(rows)}


@app.task(bind=True, name=BURST_STEP, max_retries=None)
def burst_step(self: Task, batch_id: str, token: str = "", attempts: int = 0,
               first_attempt_at: float | None = None) -> dict[str, Any]:
    c = bootstrap.container()
    buffer = burst_buffer(c)
    new_token = buffer.claim(batch_id, token or None, lease_seconds(c))
    if new_token is None:  # another step owns the batch, or it is finished
        return {"batch": batch_id, "step": "skipped"}
    phase = _run_step(c, buffer, batch_id, new_token, attempts, first_attempt_at)
    return {"batch": batch_id, "step": phase}


def _run_step(c: bootstrap.Container, buffer: BurstBuffer, batch_id: str, token: str,
              attempts: int = 0, first_attempt_at: float | None = None) -> str:
    state = buffer.state(batch_id)
    phase = state.get("phase", "gather")
    first = first_attempt_at or time.time()
    deadline = time.monotonic() + c.settings.task_time_limit_seconds - 15.0
    steps = {"gather": _gather, "submit": submit, "poll": poll, "settle": settle}

    def work() -> float | None:
        return steps[phase](c, buffer, batch_id, state, deadline)

    with step_deadline(c.settings.task_time_limit_seconds - STEP_DEADLINE_MARGIN_SECONDS):
        result = attempt(work, attempts, time.time() - first, c.retry_policy)
    if isinstance(result, Done):
        if result.value is not None:  # the next step, after that many seconds
            _next(c, buffer, batch_id, token, result.value)
        return phase
    if isinstance(result, RetryIn):
        if result.unexpected:
            logger.error("unexpected error in burst batch %s (%s)", batch_id, phase,
                         exc_info=result.exception)
        else:
            logger.info("burst batch %s: %s step again in %.1f s (%s)", batch_id, phase,
                        result.delay, result.last_error)
        _next(c, buffer, batch_id, token, result.delay, attempts=result.attempts,
              first_attempt_at=first)
        return "retrying"
    _give_up(c, buffer, batch_id, phase, result)
    return "fell_back"


def _next(c: bootstrap.Container, buffer: BurstBuffer, batch_id: str, token: str,
          delay: float, **retry: Any) -> None:
    buffer.extend(batch_id, delay + lease_seconds(c))
    send_later(BURST_STEP, {"batch_id": batch_id, "token": token, **retry}, delay)


def _give_up(c: bootstrap.Container, buffer: BurstBuffer, batch_id: str, phase: str,
             result: GiveUp) -> None:
    """The job itself failed for good: every customer not yet recorded goes the single-write
    way, which retries and dead-letters per customer as the live path does."""
    logger.warning("burst batch %s gave up in %s (%s): its customers go one by one",
                   batch_id, phase, result.reason)
    rows = buffer.rows(batch_id)
    if phase == "settle":
        left = buffer.verdicts(batch_id, 100_000)
        rows = [r for r in rows if r.customer_id in left]
    fall_back(c, rows)
    buffer.settled(batch_id, [r.customer_id for r in rows])
    if phase == "gather":  # what was not gathered yet goes one by one too
        rest = buffer.syncs(batch_id, int(buffer.state(batch_id).get("gathered") or 0),
                            MAX_PROFILES_PER_JOB)
        fall_back_syncs(c, rest)
        buffer.settled(batch_id, [s.customer_id for s in rest])
    finished(buffer, batch_id)


def _gather(c: bootstrap.Container, buffer: BurstBuffer, batch_id: str,
            state: dict[str, str], deadline: float) -> float | None:
    if not gather(c, buffer, batch_id, int(state.get("gathered") or 0), deadline):
        return 0.0  # the deadline came first: the next step goes on from the checkpoint
    buffer.set_state(batch_id, phase="submit")
    if deadline - time.monotonic() < SUBMIT_SECONDS:
        return 0.0  # the job goes out in a step of its own, with time to wait for a slot
    return submit(c, buffer, batch_id, state, deadline)













