"""Burst mode's tasks: a backlog of customers goes to Klaviyo in profile bulk import jobs.

The switch: ``sync_customer`` asks ``burst_mode_on`` before it writes. With more than
BURST_THRESHOLD customers waiting (queued syncs plus customers waiting for a job) the fleet
switches on; below half of it, off (worker/core/burst.py). While it is on, a sync does the
live path's fetch, map, validation and fingerprint check, then ``hand_to_burst`` leaves its
row in Redis (worker/adapters/burst_buffer.py) instead of upserting. Its task is
acknowledged, but its ledger entry stays open until the batch records its outcome, so the
lost-task sweep still protects the customer.

A batch is a chain of short steps, each well inside the task time limit, each checkpointed
in Redis and owned through a lease: ``flush_burst`` takes up to one job of waiting rows and
submits the job; ``burst_step`` polls it (rescheduled through the scheduled set, never
waiting in a worker) and then records the outcomes in slices (worker/burst_outcomes.py). A
worker killed mid-step leaves the lease to run out; the sweep (``kick_abandoned_bursts``)
then gives the batch's current step to another worker, which resumes from the checkpoint.
Submitting a job twice is an upsert of the same rows: nothing is doubled in Klaviyo.
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
from worker.adapters.klaviyo_bulk import BulkRowsRejected, ImportRowError
from worker.adapters.step_deadline import step_deadline
from worker.adapters.task_ledger import TaskLedger
from worker.burst_gather import gather
from worker.burst_outcomes import fall_back, fall_back_syncs, record_refused, settle_slice
from worker.celery_app import app
from worker.core import reasons
from worker.core.burst import (
    MAX_PROFILES_PER_JOB,
    BurstRow,
    RowError,
    WaitingSync,
    next_mode,
    row_verdicts,
    rows_that_fit,
)
from worker.core.errors import FieldError
from worker.core.retry import Done, GiveUp, RetryIn, attempt
from worker.dispatch import send_later

logger = logging.getLogger("ipaas_klaviyo.burst")

FLUSH_TASK = "ipaas_klaviyo.flush_burst"
STEP_TASK = "ipaas_klaviyo.burst_step"
SYNC_TASK = "ipaas_klaviyo.sync_customer"
DRAIN_CHUNK, DRAIN_ROUNDS = 1_000, 20  # up to two jobs' worth per flush
# Profile ids are read back 100 a call; a pause between calls keeps a batch's read-back
# (100 calls for 10,000 customers) near 20 calls/s, far from the L tier's 75/s even when
# a busy machine delays requests past the limiter's margin and bunches them up.
READ_BACK_CHUNK, READ_BACK_PAUSE_SECONDS = 100, 0.05
PROFILES_QUEUE = "profiles"
# Customers wait this long for more to join their job (unless a job's worth waits already).
WINDOW_SECONDS = 3.0
POLL_FIRST_SECONDS, POLL_MAX_SECONDS = 1.0, 5.0
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
    wanted = next_mode(on, backlog, threshold)
    if wanted != on and buffer.set_mode(wanted):
        logger.warning(json.dumps({"burst_mode": "on" if wanted else "off", "backlog": backlog,
                                   "threshold": threshold}))
        c.metrics.incr("burst_switches_total", {"to": "on" if wanted else "off"})
        if wanted:  # the first flush drains the backlog off the queue
            flush_burst.apply_async()
    return wanted or held


def _drain_queue(c: bootstrap.Container, buffer: BurstBuffer) -> None:
    """Move queued customer syncs into the buffer in bulk: in burst mode a queued sync
    would only do that itself, one task each. Their ledger entries stay open (postponed),
    and each customer's pending marker is cleared as its task would clear it on starting,
    so a change from now on queues a new sync: the last change wins."""
    from worker.adapters.pending import CUSTOMER, PendingSyncs

    ledger, pending = TaskLedger(c.redis), PendingSyncs(c.redis)
    for _ in range(DRAIN_ROUNDS):
        syncs = buffer.drain(PROFILES_QUEUE, SYNC_TASK, DRAIN_CHUNK, time.time())
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
    elif buffer.claim_flush(WINDOW_SECONDS * 5):
        send_later(FLUSH_TASK, {}, WINDOW_SECONDS)


def kick_abandoned_bursts(buffer: BurstBuffer) -> int:
    """The lost-task sweep's share: a batch whose step let its lease run out died with its
    worker; its step is sent again (the claim inside lets exactly one run)."""
    abandoned = buffer.abandoned()
    for batch_id in abandoned:
        burst_step.apply_async(kwargs={"batch_id": batch_id})
    waiting = buffer.waiting()
    if waiting and buffer.claim_flush(WINDOW_SECONDS * 5):
        flush_burst.apply_async()
    return len(abandoned)


# -- the steps ----------------------------------------------------------------------------


@app.task(bind=True, name=FLUSH_TASK, max_retries=None)
def flush_burst(self: Task) -> dict[str, Any]:
    """Take one job's worth of waiting customers and submit it; flush again if more wait."""
    c = bootstrap.container()
    buffer = burst_buffer(c)
    buffer.release_flush()
    if buffer.mode():
        _drain_queue(c, buffer)
    candidates = buffer.peek(MAX_PROFILES_PER_JOB)
    if not candidates:
        # What waits is a newer change of customers still in flight: look again shortly.
        if buffer.waiting() and buffer.claim_flush(WINDOW_SECONDS * 5):
            send_later(FLUSH_TASK, {}, WINDOW_SECONDS)
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
    if (buffer.waiting() or buffer.mode()) and buffer.claim_flush(WINDOW_SECONDS * 5):
        send_later(FLUSH_TASK, {}, WINDOW_SECONDS)
    if rows:
        _run_step(c, buffer, batch_id, token)
    return {"batch": batch_id, "customers": len(rows)}


@app.task(bind=True, name=STEP_TASK, max_retries=None)
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
    steps = {"gather": _gather, "submit": _submit, "poll": _poll, "settle": _settle}

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
    send_later(STEP_TASK, {"batch_id": batch_id, "token": token, **retry}, delay)


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
    _finished(buffer, batch_id)


def _gather(c: bootstrap.Container, buffer: BurstBuffer, batch_id: str,
            state: dict[str, str], deadline: float) -> float | None:
    if not gather(c, buffer, batch_id, int(state.get("gathered") or 0), deadline):
        return 0.0  # the deadline came first: the next step goes on from the checkpoint
    buffer.set_state(batch_id, phase="submit")
    return _submit(c, buffer, batch_id, state, deadline)


def _submit(c: bootstrap.Container, buffer: BurstBuffer, batch_id: str,
            state: dict[str, str], deadline: float) -> float | None:
    # A gather step repeated after a crash appended some rows twice: the last one counts.
    rows = list({r.customer_id: r for r in buffer.rows(batch_id)}.values())
    sizes = [len(json.dumps({"type": "profile", "attributes": r.attributes},
                            separators=(",", ":"), default=str)) for r in rows]
    fit = rows_that_fit(sizes)
    if fit < len(rows):  # over 5 MB: the rest waits for the next job
        buffer.put_back(batch_id, [WaitingSync(r.customer_id, r.task_id, r.tracking_guid,
                                               queued_at=r.queued_at) for r in rows[fit:]])
        rows = rows[:fit]
    buffer.replace_rows(batch_id, rows)
    while rows:
        try:
            job = c.bulk.start_job([r.attributes for r in rows])
        except BulkRowsRejected as refused:
            # Klaviyo validates the job as a whole: drop the rows it names, send the rest.
            bad = {e.row_index for e in refused.rows if e.row_index is not None}
            if not bad:
                raise
            record_refused(c, [(rows[i], _refusals(refused.rows, i)) for i in sorted(bad)
                               if i < len(rows)])
            buffer.settled(batch_id, [rows[i].customer_id for i in bad if i < len(rows)])
            rows = [r for i, r in enumerate(rows) if i not in bad]
            buffer.replace_rows(batch_id, rows)
            continue
        buffer.set_state(batch_id, phase="poll", job_id=job.id, polls=0)
        return POLL_FIRST_SECONDS
    _finished(buffer, batch_id)
    return None


def _refusals(errors: list[ImportRowError], index: int) -> list[FieldError]:
    return [FieldError(e.field or "profile", reasons.KLAVIYO_REJECTED,
                       f"Klaviyo refused the row ({e.code})")
            for e in errors if e.row_index == index]


def _poll(c: bootstrap.Container, buffer: BurstBuffer, batch_id: str,
          state: dict[str, str], deadline: float) -> float | None:
    job_id = state["job_id"]
    polls = int(state.get("polls") or 0)
    job = c.bulk.get_job(job_id)
    if not job.finished:
        buffer.set_state(batch_id, polls=polls + 1)
        return min(POLL_MAX_SECONDS, POLL_FIRST_SECONDS * 2 ** polls)
    rows = buffer.rows(batch_id)
    if not rows:
        _finished(buffer, batch_id)
        return None
    errors = [_row_error(e) for e in c.bulk.iter_errors(job_id)] if job.failed_count else []
    verdicts = row_verdicts(rows, errors)
    found = _read_back(c, buffer, batch_id, rows, deadline)
    if found is None:
        return 0.0
    saved: dict[str, dict[str, Any]] = {}
    for row in rows:
        verdict = verdicts[row.customer_id]
        profile_id = found.get(str(row.attributes.get("external_id"))) or row.linked_profile_id
        saved[row.customer_id] = {
            "verdict": verdict.verdict, "profile_id": profile_id,
            "errors": [e.as_dict() for e in verdict.errors]}
    buffer.save_verdicts(batch_id, saved)
    return _settle(c, buffer, batch_id, state, deadline)


def _read_back(c: bootstrap.Container, buffer: BurstBuffer, batch_id: str,
               rows: list[BurstRow], deadline: float) -> dict[str, str] | None:
    """external id → profile id, read back 100 a call (L tier) as the backfill does, paced
    and checkpointed: ids found are kept in Redis, so a step retried after a 429 goes on
    where it stopped, and a batch's hundred calls never come as one burst."""
    found = buffer.found(batch_id)
    wanted = [str(r.attributes["external_id"]) for r in rows
              if r.attributes.get("external_id") and str(r.attributes["external_id"]) not in found]
    for start in range(0, len(wanted), READ_BACK_CHUNK):
        if time.monotonic() > deadline:
            return None  # the next step goes on from what is kept
        chunk = wanted[start:start + READ_BACK_CHUNK]
        ids = c.bulk.profile_ids_by_external_id(chunk)
        # An id not found is recorded too (empty): the row then falls back to a single write.
        buffer.add_found(batch_id, {ext: ids.get(ext, "") for ext in chunk})
        found.update(ids)
        time.sleep(READ_BACK_PAUSE_SECONDS)
    return {ext: pid for ext, pid in found.items() if pid}


def _row_error(error: ImportRowError) -> RowError:
    payload = error.original_payload or {}
    external, email = payload.get("external_id"), payload.get("email")
    return RowError(error.row_index, error.field, error.code,
                    external_id=str(external) if external is not None else None,
                    email=str(email) if email is not None else None)


def _settle(c: bootstrap.Container, buffer: BurstBuffer, batch_id: str,
            state: dict[str, str], deadline: float) -> float | None:
    """Record outcomes slice by slice until done, or hand the rest to the next step."""
    rows = {r.customer_id: r for r in buffer.rows(batch_id)}
    while time.monotonic() < deadline:
        verdicts = buffer.verdicts(batch_id, 500)
        if not verdicts:
            _finished(buffer, batch_id)
            return None
        settle_slice(c, [(rows[cid], v) for cid, v in verdicts.items() if cid in rows])
        if buffer.settled(batch_id, list(verdicts)) == 0:
            _finished(buffer, batch_id)
            return None
    return 0.0


def _finished(buffer: BurstBuffer, batch_id: str) -> None:
    """Done: a newer change of one of its customers, held back meanwhile, can go now."""
    buffer.finish(batch_id)
    if buffer.waiting() and buffer.claim_flush(WINDOW_SECONDS * 5):
        send_later(FLUSH_TASK, {}, WINDOW_SECONDS)
