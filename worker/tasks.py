"""Thin Celery shells: decode the ids, call the core service, decide retry or dead-letter.

Every step ends in exactly one of three ways: done (history records it and any old
dead-letter entry for the step is cleared), retried with backoff, or dead-lettered with a
reason. Unexpected exceptions are retried like transient ones, so a bug or an outage never
silently drops a customer: when the budget runs out it lands in the dead-letter store.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from celery import Task
from celery.exceptions import Ignore

from worker import bootstrap
from worker.adapters.pending import CUSTOMER, PendingSyncs
from worker.adapters.task_ledger import LedgerEntry, TaskLedger
from worker.batch_tasks import queue_subscription_step
from worker.celery_app import app
from worker.core import reasons
from worker.core.errors import FinalError, RateLimited, RetryableError, StepOutcome
from worker.core.retry import backoff_seconds, should_retry
from worker.core.subscription_step import sync_subscriptions
from worker.core.sync_service import ProfileSyncResult, sync_address, sync_profile
from worker.dispatch import queue_of, send_step
from worker.observability import step_scope

logger = logging.getLogger("ipaas_klaviyo.sync")

PROFILE, ADDRESS, LISTS = "profile", "address", "lists"
StepWork = Callable[[bootstrap.Container], StepOutcome]


def _log(customer_id: str, outcome: StepOutcome, tracking_guid: str | None, ms: float) -> None:
    # One structured line per step outcome: ids, codes and timings only, no personal data.
    logger.info(
        json.dumps(
            {
                "customer_id": customer_id,
                "step": outcome.step,
                "outcome": outcome.outcome,
                "reason": outcome.reason,
                "duration_ms": round(ms, 1),
                "tracking_guid": tracking_guid,
            }
        )
    )


def _result(customer_id: str, outcome: StepOutcome, children: list[str] | None = None) -> dict:
    return {
        "customer_id": customer_id,
        "step": outcome.step,
        "outcome": outcome.outcome,
        "reason": outcome.reason,
        "profile_id": outcome.profile_id,
        "errors": [e.as_dict() for e in outcome.errors],
        "children": children or [],
    }


def run_step(
    task: Task,
    step: str,
    customer_id: str,
    tracking_guid: str | None,
    first_attempt_at: float | None,
    work: StepWork,
    retry_kwargs: dict[str, Any],
    *,
    transaction_id: str | None = None,
) -> StepOutcome:
    """With ``transaction_id``, ``customer_id`` names the history the step is filed under
    and the dead letter is the transaction's, with ``retry_kwargs["customer_id"]`` (which the
    work may fill in once it knows the customer)."""
    # Errors reported to Sentry while the step runs carry its customer, step and guid.
    with step_scope(customer_id, tracking_guid, step):
        return _run_step(task, step, customer_id, tracking_guid, first_attempt_at, work,
                         retry_kwargs, transaction_id)


def _run_step(
    task: Task,
    step: str,
    customer_id: str,
    tracking_guid: str | None,
    first_attempt_at: float | None,
    work: StepWork,
    retry_kwargs: dict[str, Any],
    transaction_id: str | None = None,
) -> StepOutcome:
    c = bootstrap.container()
    started = time.monotonic()
    first = first_attempt_at or time.time()
    # Ids (never data) a replay needs to rerun this step through its own task.
    context = {k: str(retry_kwargs[k]) for k in ("profile_id", "collection")
               if retry_kwargs.get(k)} or None
    try:
        outcome = work(c)
    except FinalError as exc:
        outcome = StepOutcome(step, "rejected", exc.reason, errors=exc.errors)
        c.dead_letters.record(
            customer_id=_dead_letter_customer(customer_id, retry_kwargs, transaction_id),
            step=step, reason=exc.reason, errors=exc.errors,
            last_error=str(exc), context=context, transaction_id=transaction_id,
        )
    except Exception as exc:
        # Transient by classification (RetryableError) or unknown: retry within budget.
        # The message of an unexpected error may hold data, so only its type is kept.
        last_error = str(exc) if isinstance(exc, RetryableError) else type(exc).__name__
        # Waiting for our own limiter is not a failed attempt: nothing was sent.
        waits = int(retry_kwargs.get("limiter_waits") or 0)
        if isinstance(exc, RateLimited):
            retry_kwargs = {**retry_kwargs, "limiter_waits": waits + 1}
            waits += 1
        attempts = task.request.retries + 1 - waits
        if should_retry(attempts, time.time() - first, c.retry_policy):
            retry_after = exc.retry_after if isinstance(exc, RetryableError) else None
            countdown = backoff_seconds(
                max(0, attempts - 1), c.retry_policy, retry_after=retry_after
            )
            c.history.record(
                customer_id, StepOutcome(step, "retrying", last_error), tracking_guid=tracking_guid
            )
            if not isinstance(exc, RetryableError):
                logger.exception("unexpected error in %s step for customer %s", step, customer_id)
            c.metrics.incr("retries_total", {"step": step})
            retry = {**retry_kwargs, "first_attempt_at": first}
            # The retry is the same task (same id): its ledger entry stays open, due after
            # the countdown, and a resend would carry the retry's arguments.
            TaskLedger(c.redis).postpone(
                task.request.id, time.time() + countdown + c.settings.lost_task_after_seconds,
                LedgerEntry(task.name, queue_of(task.name), retry))
            # Our own budget (attempts and total time) decides; Celery's counter is unlimited.
            raise task.retry(args=(), kwargs=retry, countdown=countdown) from None
        outcome = StepOutcome(step, "rejected", reasons.RETRIES_EXHAUSTED)
        c.dead_letters.record(
            customer_id=_dead_letter_customer(customer_id, retry_kwargs, transaction_id),
            step=step, reason=reasons.RETRIES_EXHAUSTED, errors=[],
            last_error=last_error, context=context, transaction_id=transaction_id,
        )
    else:
        c.dead_letters.remove(f"{step}:{transaction_id or customer_id}")
    record_outcome(c, customer_id, outcome, tracking_guid, (time.monotonic() - started) * 1000)
    TaskLedger(c.redis).finish(task.request.id)
    return outcome


def record_outcome(c: bootstrap.Container, customer_id: str, outcome: StepOutcome,
                   tracking_guid: str | None, elapsed_ms: float) -> None:
    """History, the structured log line and the metrics of one finished step."""
    c.history.record(customer_id, outcome, tracking_guid=tracking_guid, duration_ms=elapsed_ms)
    _log(customer_id, outcome, tracking_guid, elapsed_ms)
    c.metrics.incr("syncs_total", {"step": outcome.step, "outcome": outcome.outcome})


def _dead_letter_customer(customer_id: str, retry_kwargs: dict[str, Any],
                          transaction_id: str | None) -> str | None:
    if transaction_id is None:
        return customer_id
    known = retry_kwargs.get("customer_id")
    return str(known) if known else None


@app.task(bind=True, name="ipaas_klaviyo.sync_customer", max_retries=None)
def sync_customer(
    self: Task,
    customer_id: str,
    tracking_guid: str | None = None,
    first_attempt_at: float | None = None,
    force: bool = False,
    limiter_waits: int = 0,
) -> dict:
    """Fetch, map, validate, resolve and upsert one customer; then chain its other steps.

    An update identical to the last payload that reached Klaviyo is skipped as `unchanged`
    unless `force` is set or the customer has an open dead-letter entry (a retry is due).
    """
    PendingSyncs(bootstrap.container().redis).started(CUSTOMER, str(customer_id))
    customer_id = str(customer_id)
    children: list[str] = []
    inline: list[dict] = []  # outcomes of chained steps settled here, for `sync --wait`

    def send_next_steps(synced: ProfileSyncResult) -> None:
        c = bootstrap.container()
        step_kwargs = {"customer_id": customer_id, "profile_id": synced.profile_id,
                       "collection": synced.collection, "tracking_guid": tracking_guid}
        if synced.location_applied:
            # The valid address went out with the upsert: the address step is done, and a
            # task of its own would only record that (the task runs when there is work left:
            # an address to reject or re-check, or a replay).
            address = StepOutcome(ADDRESS, "synced", profile_id=synced.profile_id)
            c.dead_letters.remove(f"{ADDRESS}:{customer_id}")
            record_outcome(c, customer_id, address, tracking_guid, 0.0)
            inline.append(_result(customer_id, address))
        else:
            children.append(send_step(apply_address, step_kwargs).id)
        children.append(send_step(apply_subscriptions, step_kwargs).id)

    def work(c: bootstrap.Container) -> StepOutcome:
        synced = sync_profile(
            customer_id, c.ports, c.mapping,
            default_region=c.settings.default_phone_region, tracking_guid=tracking_guid,
            force=force or bool(c.dead_letters.for_customer(customer_id)),
            on_upserted=send_next_steps,
        )
        if synced.unchanged:
            return StepOutcome(PROFILE, "unchanged", profile_id=synced.profile_id)
        return StepOutcome(
            PROFILE, "created" if synced.created else "updated", profile_id=synced.profile_id
        )

    outcome = run_step(
        self, PROFILE, customer_id, tracking_guid, first_attempt_at, work,
        {"customer_id": customer_id, "tracking_guid": tracking_guid, "force": force,
         "limiter_waits": limiter_waits},
    )
    return {**_result(customer_id, outcome, children), "inline": inline}


@app.task(bind=True, name="ipaas_klaviyo.apply_address", max_retries=None)
def apply_address(
    self: Task,
    customer_id: str,
    profile_id: str,
    collection: str,
    tracking_guid: str | None = None,
    first_attempt_at: float | None = None,
    location_applied: bool = False,
    limiter_waits: int = 0,
) -> dict:
    """Make the primary billing address the profile's location; a bad address rejects
    this step only."""

    def work(c: bootstrap.Container) -> StepOutcome:
        sync_address(
            customer_id, profile_id, collection, c.ports, c.mapping,
            default_region=c.settings.default_phone_region, location_applied=location_applied,
        )
        return StepOutcome(ADDRESS, "synced", profile_id=profile_id)

    outcome = run_step(
        self, ADDRESS, customer_id, tracking_guid, first_attempt_at, work,
        {"customer_id": customer_id, "profile_id": profile_id, "collection": collection,
         "tracking_guid": tracking_guid, "location_applied": location_applied,
         "limiter_waits": limiter_waits},
    )
    return _result(customer_id, outcome)


@app.task(bind=True, name="ipaas_klaviyo.apply_subscriptions", max_retries=None)
def apply_subscriptions(
    self: Task,
    customer_id: str,
    profile_id: str,
    collection: str,
    tracking_guid: str | None = None,
    first_attempt_at: float | None = None,
    limiter_waits: int = 0,
) -> dict:
    """Apply SubscribeProfile, LIST_ and UCLIST_ to the profile.

    With SUBSCRIPTION_BATCH_WINDOW_SECONDS above 0 the actions are queued for a batched
    call (worker.batch_tasks): the flush records this step's outcome and stores this task's
    result, so here nothing is recorded and no result is stored (Ignore). A failure to plan
    or queue is retried or dead-lettered by run_step like any step failure.
    """
    c = bootstrap.container()
    batching = c.settings.subscription_batch_window > 0
    failed: Exception | None = None
    if batching:
        try:
            queued = queue_subscription_step(
                c, self.request.id, customer_id, profile_id, collection, tracking_guid,
                now=datetime.now(UTC),
            )
        except Exception as exc:
            failed = exc
        else:
            if queued:
                # The buffer in Redis holds the step now; a flush lost on the way is the
                # lost-task sweep's to replace (kick_stalled_batches), not this task's.
                TaskLedger(c.redis).finish(self.request.id)
                raise Ignore()

    def work(c: bootstrap.Container) -> StepOutcome:
        if failed is not None:
            raise failed
        if batching:  # the plan had nothing to send
            return StepOutcome(LISTS, "skipped", profile_id=profile_id)
        actions = sync_subscriptions(
            customer_id, profile_id, collection, c.ports, c.mapping,
            default_region=c.settings.default_phone_region, now=datetime.now(UTC),
        )
        return StepOutcome(LISTS, "synced" if actions else "skipped", profile_id=profile_id)

    outcome = run_step(
        self, LISTS, customer_id, tracking_guid, first_attempt_at, work,
        {"customer_id": customer_id, "profile_id": profile_id, "collection": collection,
         "tracking_guid": tracking_guid, "limiter_waits": limiter_waits},
    )
    return _result(customer_id, outcome)
