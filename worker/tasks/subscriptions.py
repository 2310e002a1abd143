"""The batched lists step: customers' subscription and list actions gathered into one
Klaviyo call per kind and list, with outcomes kept per customer.

``apply_subscriptions`` plans a customer's step and calls ``queue_subscription_step``, which
appends one item per action to the Redis buffer of its (kind, list, historical) batch key and
makes sure a ``flush_subscriptions`` runs for that key: after the batch window, or at once
when the buffer holds a full batch. The flush moves up to a batch of items to an in-flight
list it leases, sends one call, settles every item, and acknowledges the batch.

Outcomes: a step is done when each of its actions was sent or refused. The flush that
settles its last action records the lists outcome in history ("synced", or "rejected" with
the first refusal's reason, which is then dead-lettered), and stores the result of the
``apply_subscriptions`` task that queued it, so whoever waits on that task (``sync --wait``)
sees the real outcome. A customer with several actions (unsubscribe and leave a list) waits
for all its batches; one refused action rejects the step.

Crash safety: the buffer and in-flight lists are in Redis; tasks are acks_late, so a flush
killed mid-send comes back, and any flush of the key re-sends a batch whose lease ran out
(its flush died). Sending a batch twice is harmless: subscribing, unsubscribing and removing
are idempotent in Klaviyo, and settling an action twice changes nothing — except that a
step whose outcome was never recorded (its flush died between settling and recording) is
handed back by the re-send, so its outcome is recorded then. A flush message lost with a
worker is replaced by the lost-task sweep (``SubscriptionBuffer.claim_stalled``).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from datetime import datetime
from typing import Any

from celery import Task

from worker import bootstrap
from worker.adapters.scheduled import Waiting, subject_of
from worker.adapters.step_deadline import step_deadline
from worker.adapters.subscription_batches import BatchRow, send_subscription_batch
from worker.adapters.subscription_buffer import (
    InFlight,
    QueuedStep,
    SettledStep,
    SubscriptionBuffer,
    marker_seconds,
)
from worker.core import reasons
from worker.core.batch_outcomes import BatchKey, QueuedItem, step_outcome
from worker.core.errors import FieldError, StepOutcome, headline_reason
from worker.core.retry import Done, RetryIn, attempt
from worker.core.subscriptions import REMOVE_FROM_LIST
from worker.services.subscription_step import plan_subscription_step
from worker.tasks.celery_app import app
from worker.tasks.dispatch import send_later
from worker.tasks.names import FLUSH_SUBSCRIPTIONS

logger = logging.getLogger("ipaas_klaviyo.sync")

LISTS = "lists"
# Left of the task time limit after the batch's last call: its outcomes are still to be written.
STEP_DEADLINE_MARGIN_SECONDS = 5.0


def subscription_buffer(c: bootstrap.Container) -> SubscriptionBuffer:
    return SubscriptionBuffer(c.redis)


def lease_seconds(c: bootstrap.Container) -> float:
    """How long a flush owns the batch it sends before another flush may take it over:
    longer than any task may run (its hard time limit), so the owner is done or dead."""
    return c.settings.task_hard_time_limit_seconds + 5.0


# -- queueing (called by apply_subscriptions) -------------------------------------------


def queue_subscription_step(
    c: bootstrap.Container,
    step_id: str | None,
    customer_id: str,
    profile_id: str,
    collection: str,
    tracking_guid: str | None,
    *,
    now: datetime,
) -> bool:
    """Plan the customer's lists step and queue its actions; False when there is nothing to
    send. A bad flag or an unknown list raises here, before anything is queued."""
    plan = plan_subscription_step(
        customer_id, profile_id, collection, c.ports, c.mapping,
        default_region=c.settings.default_phone_region, now=now,
    )
    if not plan.actions:
        return False
    step_id = step_id or f"untracked-{uuid.uuid4().hex}"
    items: list[tuple[str, QueuedItem]] = []
    for n, action in enumerate(plan.actions):
        batch_key = BatchKey(action.kind, plan.list_id(action), action.historical_import)
        # Removing from a list names the profile id only: no personal data waits for it.
        consent = action.kind != REMOVE_FROM_LIST
        items.append((batch_key.encode(), QueuedItem(
            step_id=step_id, action=n, customer_id=customer_id, profile_id=profile_id,
            email=plan.email if consent else None,
            phone_number=plan.phone_number if consent else None,
            consented_at=plan.consented_at if action.historical_import else None,
        )))
    buffer = subscription_buffer(c)
    step = QueuedStep(step_id, customer_id, profile_id, collection, tracking_guid, time.time())
    lengths = buffer.queue(step, items)
    if lengths is None:  # queued by an earlier delivery of this task: only re-arm the flushes
        lengths = {key: 0 for key, _ in items}
    window = c.settings.subscription_batch_window
    for key, length in lengths.items():
        if length >= BatchKey.decode(key).limit:
            flush_subscriptions.apply_async(kwargs={"key": key})
        elif buffer.claim_flush(key, marker_seconds(window)):
            send_later(FLUSH_SUBSCRIPTIONS, {"key": key}, window)
    return True


# -- the flush ---------------------------------------------------------------------------


@app.task(bind=True, name=FLUSH_SUBSCRIPTIONS, max_retries=None)
def flush_subscriptions(
    self: Task,
    key: str,
    batch_id: str | None = None,
    attempts: int = 0,
    first_attempt_at: float | None = None,
    attempt: int = 0,  # the name messages from earlier versions carry
) -> dict[str, Any]:
    """Send what waits under ``key`` (or, for a retry, the one in-flight ``batch_id``)."""
    c = bootstrap.container()
    buffer = subscription_buffer(c)
    batch_key = BatchKey.decode(key)
    lease = lease_seconds(c)
    sent: list[str] = []
    if batch_id is not None:
        batch = buffer.in_flight(key, batch_id)
        if batch is not None:
            buffer.extend(key, batch_id, lease)
            sent.append(_send(c, buffer, batch_key, batch, attempts or attempt,
                              first_attempt_at))
        return {"key": key, "batches": sent}
    # New items from here on schedule a new flush; what is already there is taken below.
    buffer.release_flush(key)
    # One batch per run, so the task stays well inside its time limit: a batch whose flush
    # was lost first, else the next batch of waiting items; what is left gets its own flush.
    batch = None
    for abandoned_id in buffer.abandoned(key):
        batch = buffer.reclaim(key, abandoned_id, lease)
        if batch is not None:
            logger.warning("re-sending subscription batch %s of %s after its flush was lost",
                           abandoned_id, batch_key.kind)
            break
    if batch is None:
        batch = buffer.take(key, batch_key.limit, lease)
    if batch is not None:
        _watch_leases(buffer, key)  # before sending: covers this task failing mid-way too
        sent.append(_send(c, buffer, batch_key, batch, 0, None))
    waiting = buffer.waiting(key)
    if waiting >= batch_key.limit or buffer.abandoned(key):
        flush_subscriptions.apply_async(kwargs={"key": key})
    elif waiting and buffer.claim_flush(key, marker_seconds(c.settings.subscription_batch_window)):
        # What arrived while this batch was sent waits for its own window, so a steady
        # trickle does not turn into a flush per handful of customers.
        send_later(FLUSH_SUBSCRIPTIONS, {"key": key}, c.settings.subscription_batch_window)
    _watch_leases(buffer, key)
    return {"key": key, "batches": sent}


def _watch_leases(buffer: SubscriptionBuffer, key: str) -> None:
    """Make sure a flush looks at the key when the first lease on one of its batches ends:
    if that batch's flush died or failed without settling it, the look re-sends it."""
    lease_end = buffer.next_lease_end(key)
    if lease_end is None:
        return
    wait = max(0.0, lease_end - time.time()) + 1.0
    if buffer.claim_watch(key, wait):
        send_later(FLUSH_SUBSCRIPTIONS, {"key": key}, wait)


def _send(c: bootstrap.Container, buffer: SubscriptionBuffer, key: BatchKey, batch: InFlight,
          attempts: int, first_attempt_at: float | None) -> str:
    """Send one batch; settle it, or schedule its retry. Returns what happened."""
    first = first_attempt_at or time.time()
    rows = [BatchRow(i.profile_id, i.email, i.phone_number, i.consented_at)
            for i in batch.items]
    last_error: str | None = None
    with step_deadline(c.settings.task_time_limit_seconds - STEP_DEADLINE_MARGIN_SECONDS):
        result = attempt(lambda: send_subscription_batch(c.klaviyo, key, rows), attempts,
                         time.time() - first, c.retry_policy)
    if isinstance(result, Done):
        refused = result.value
    elif isinstance(result, RetryIn):
        # The batch stays in flight, leased to its retry, which waits in the scheduled set.
        if result.unexpected:
            logger.error("unexpected error sending a subscription batch",
                         exc_info=result.exception)
        buffer.extend(key.encode(), batch.batch_id, result.delay + lease_seconds(c))
        waiting = Waiting(task_id="", task=FLUSH_SUBSCRIPTIONS, step=LISTS,
                          subject=subject_of("batch", batch.batch_id),
                          due_at=time.time() + result.delay, attempt=result.attempts + 1,
                          max_attempts=c.retry_policy.max_attempts,
                          last_error=result.last_error)
        send_later(FLUSH_SUBSCRIPTIONS, {"key": key.encode(), "batch_id": batch.batch_id,
                                "attempts": result.attempts, "first_attempt_at": first},
                   result.delay, waiting=waiting)
        return "retrying"
    elif result.reason == reasons.RETRIES_EXHAUSTED:
        last_error = result.last_error
        refused = {n: [FieldError("request", reasons.RETRIES_EXHAUSTED, last_error)]
                   for n in range(len(rows))}
    else:  # Klaviyo refused the whole batch for good
        refused = {n: result.errors or _request_error(result.reason) for n in range(len(rows))}
    for n, item in enumerate(batch.items):
        refusal = (headline_reason(refused[n]), refused[n]) if n in refused else None
        settled = buffer.settle(item, refusal)
        if settled is not None:
            _finish(c, settled, last_error)
            buffer.recorded(item.step_id)
    buffer.ack(key.encode(), batch.batch_id)
    return "refused" if len(refused) == len(rows) else "sent"


def _request_error(reason: str) -> list[FieldError]:
    return [FieldError("request", reason, "Klaviyo refused the batch")]


def _finish(c: bootstrap.Container, settled: SettledStep, last_error: str | None) -> None:
    step = settled.step
    outcome = StepOutcome(LISTS, step_outcome(settled.reason), settled.reason,
                          profile_id=step.profile_id, errors=settled.errors)
    if settled.reason:
        c.dead_letters.record(
            customer_id=step.customer_id, step=LISTS, reason=settled.reason,
            errors=settled.errors, last_error=last_error,
            context={"profile_id": step.profile_id, "collection": step.collection},
        )
    else:
        c.dead_letters.remove(f"{LISTS}:{step.customer_id}")
    elapsed_ms = (time.time() - step.queued_at) * 1000 if step.queued_at else None
    c.history.record(step.customer_id, outcome, tracking_guid=step.tracking_guid,
                     duration_ms=elapsed_ms)
    c.metrics.incr("syncs_total", {"step": outcome.step, "outcome": outcome.outcome})
    logger.info(json.dumps({
        "customer_id": step.customer_id, "step": LISTS, "outcome": outcome.outcome,
        "reason": outcome.reason, "duration_ms": round(elapsed_ms or 0.0, 1),
        "tracking_guid": step.tracking_guid, "batched": True,
    }))
    if not step.step_id.startswith("untracked-"):
        # The queuing task stored no result (it raised Ignore): this is its result.
        app.backend.mark_as_done(step.step_id, {
            "customer_id": step.customer_id, "step": LISTS, "outcome": outcome.outcome,
            "reason": outcome.reason, "profile_id": step.profile_id,
            "errors": [e.as_dict() for e in outcome.errors], "children": [],
        })
