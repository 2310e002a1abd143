"""Thin Celery shells: decode the ids, call the core service, decide retry or dead-letter.

Every step ends in exactly one of three ways: done (history records it and any old
dead-letter entry for the step is cleared), retried with backoff, or dead-lettered with a
reason. Unexpected exceptions are retried like transient ones, so a bug or an outage never
silently drops a customer: when the budget runs out it lands in the dead-letter store.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from celery import Task
from celery.exceptions import Ignore

from worker import bootstrap
from worker.adapters.pending import CUSTOMER, PendingSyncs
from worker.adapters.scheduled import Waiting, subject_of
from worker.adapters.step_deadline import step_deadline
from worker.adapters.task_ledger import TaskLedger
from worker.adapters.tombstones import Tombstones
from worker.core import reasons
from worker.core.burst import WaitingSync
from worker.core.errors import StepOutcome
from worker.core.retry import GiveUp, RetryIn, attempt
from worker.observability import step_scope
from worker.services.subscription_step import sync_subscriptions
from worker.services.sync_service import ProfileSyncResult, sync_address, sync_profile
from worker.tasks.burst import burst_buffer, goes_to_burst, hand_to_burst
from worker.tasks.celery_app import app
from worker.tasks.dispatch import send_later, send_step
from worker.tasks.outcomes import record_outcome
from worker.tasks.subscriptions import queue_subscription_step

logger = logging.getLogger("ipaas_klaviyo.sync")

PROFILE, ADDRESS, LISTS = "profile", "address", "lists"
# Left of the task time limit after a step's last call: its outcome is still to be written.
STEP_DEADLINE_MARGIN_SECONDS = 5.0
# A profile step handed to a burst batch (worker/tasks/burst.py): the batch records its
# outcome and finishes its ledger entry.
HANDED_TO_BURST = "handed_to_burst"
StepWork = Callable[[bootstrap.Container], StepOutcome]



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
    work: StepWork,
    retry_kwargs: dict[str, Any],
    *,
    transaction_id: str | None = None,
) -> StepOutcome:
    """Run one attempt of ``work`` and settle it: done, rejected (dead-lettered), or its
    retry written to the scheduled set (the task is then acknowledged and stores nothing:
    whoever waits on its result gets the retry's, which runs under the same task id).

    ``retry_kwargs``: the task's arguments for a retry, with ``attempts`` (failed attempts
    counted so far) and ``first_attempt_at``. With ``transaction_id``, ``customer_id`` names
    the history the step is filed under and the dead letter is the transaction's, with
    ``retry_kwargs["customer_id"]`` (which the work may fill in once it knows the customer).
    """
    # Errors reported to Sentry while the step runs carry its customer, step and guid.
    with step_scope(customer_id, tracking_guid, step):
        return _run_step(task, step, customer_id, tracking_guid, work, retry_kwargs,
                         transaction_id)


def _run_step(
    task: Task,
    step: str,
    customer_id: str,
    tracking_guid: str | None,
    work: StepWork,
    retry_kwargs: dict[str, Any],
    transaction_id: str | None = None,
) -> StepOutcome:
    c = bootstrap.container()
    started = time.monotonic()
    first = float(retry_kwargs.get("first_attempt_at") or time.time())
    attempts = int(retry_kwargs.get("attempts") or 0)
    # Ids (never data) a replay needs to rerun this step through its own task.
    context = {k: str(retry_kwargs[k]) for k in ("profile_id", "collection")
               if retry_kwargs.get(k)} or None
    # Limiter waits end in time for the step to finish inside its time limit.
    with step_deadline(c.settings.task_time_limit_seconds - STEP_DEADLINE_MARGIN_SECONDS):
        result = attempt(lambda: work(c), attempts, time.time() - first, c.retry_policy)
    if isinstance(result, RetryIn):
        _schedule_retry(task, c, step, customer_id, tracking_guid, result,
                        {**retry_kwargs, "attempts": result.attempts, "first_attempt_at": first},
                        transaction_id)
        raise Ignore()
    if isinstance(result, GiveUp):
        outcome = StepOutcome(step, "rejected", result.reason, errors=result.errors)
        c.dead_letters.record(
            customer_id=_dead_letter_customer(customer_id, retry_kwargs, transaction_id),
            step=step, reason=result.reason, errors=result.errors,
            last_error=result.last_error, context=context, transaction_id=transaction_id,
        )
    else:
        outcome = result.value
        if outcome.outcome == HANDED_TO_BURST:
            raise Ignore()  # acknowledged; its ledger entry stays open until the batch settles
        c.dead_letters.remove(f"{step}:{transaction_id or customer_id}")
    record_outcome(c, customer_id, outcome, tracking_guid, (time.monotonic() - started) * 1000)
    TaskLedger(c.redis).finish(task.request.id)
    return outcome


def _schedule_retry(task: Task, c: bootstrap.Container, step: str, customer_id: str,
                    tracking_guid: str | None, retry: RetryIn, kwargs: dict[str, Any],
                    transaction_id: str | None) -> None:
    """Write the step's next run to the scheduled set: same task id (its ledger entry and
    any waiter follow it), due after the backoff, with what ``status`` shows of it."""
    if retry.unexpected:
        logger.error("unexpected error in %s step for customer %s", step, customer_id,
                     exc_info=retry.exception)
    task_id = task.request.id or str(uuid.uuid4())
    waiting = Waiting(task_id=task_id, task=task.name, step=step,
                      subject=subject_of(step, transaction_id or customer_id),
                      due_at=time.time() + retry.delay, attempt=retry.attempts + 1,
                      max_attempts=c.retry_policy.max_attempts, last_error=retry.last_error)
    send_later(task.name, kwargs, retry.delay, task_id=task_id, waiting=waiting, tracked=True,
               ignore_result=bool(getattr(task.request, "ignore_result", False)))
    c.history.record(customer_id, StepOutcome(step, "retrying", retry.last_error),
                     tracking_guid=tracking_guid)
    c.metrics.incr("retries_total", {"step": step})



def _dead_letter_customer(customer_id: str, retry_kwargs: dict[str, Any],
                          transaction_id: str | None) -> str | None:
    if transaction_id is None:
        return customer_id
    known = retry_kwargs.get("customer_id")
    return str(known) if known else None


def dropped_if_deleted(task: Task, step: str, customer_id: str, tracking_guid: str | None,
                       *, explicit: bool = False) -> StepOutcome | None:
    """A tombstoned customer's step is dropped before it reads or writes anything (a
    webhook, reconcile or a retry scheduled before the deletion). An explicit ``sync ID``
    is dead-lettered as ``customer_deleted``, so the operator sees why nothing happened."""
    c = bootstrap.container()
    if not Tombstones(c.redis).is_deleted(customer_id):
        return None
    if explicit:
        outcome = StepOutcome(step, "rejected", reasons.CUSTOMER_DELETED)
        c.dead_letters.record(customer_id=customer_id, step=step,
                              reason=reasons.CUSTOMER_DELETED, errors=[],
                              last_error="the customer was deleted (tombstone)")
    else:
        outcome = StepOutcome(step, "skipped", reasons.CUSTOMER_DELETED)
    record_outcome(c, customer_id, outcome, tracking_guid, 0.0)
    TaskLedger(c.redis).finish(task.request.id)
    return outcome


@app.task(bind=True, name="ipaas_klaviyo.sync_customer", max_retries=None)
def sync_customer(
    self: Task,
    customer_id: str,
    tracking_guid: str | None = None,
    first_attempt_at: float | None = None,
    force: bool = False,
    attempts: int = 0,
    explicit: bool = False,
    single_write: bool = False,
    **_earlier: Any,  # arguments only messages from earlier versions carry (limiter_waits)
) -> dict:
    """Fetch, map, validate, resolve and upsert one customer; then chain its other steps.

    An update identical to the last payload that reached Klaviyo is skipped as `unchanged`
    unless `force` is set or the customer has an open dead-letter entry (a retry is due).
    In burst mode the upsert is left to a bulk import batch (`single_write`: never, for a
    customer a batch sends back, e.g. after an identifier conflict).
    """
    PendingSyncs(bootstrap.container().redis).started(CUSTOMER, str(customer_id))
    customer_id = str(customer_id)
    dropped = dropped_if_deleted(self, PROFILE, customer_id, tracking_guid, explicit=explicit)
    if dropped is not None:
        return {**_result(customer_id, dropped), "inline": []}
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
        if not single_write and goes_to_burst(c, customer_id):
            return _to_burst(c, customer_id, tracking_guid, self.request.id, force)
        forced = force or bool(c.dead_letters.for_customer(customer_id))
        synced = sync_profile(
            customer_id, c.ports, c.mapping,
            default_region=c.settings.default_phone_region, tracking_guid=tracking_guid,
            force=forced,
            on_upserted=send_next_steps,
        )
        if synced.unchanged:
            return StepOutcome(PROFILE, "unchanged", profile_id=synced.profile_id)
        return StepOutcome(
            PROFILE, "created" if synced.created else "updated", profile_id=synced.profile_id
        )

    outcome = run_step(
        self, PROFILE, customer_id, tracking_guid, work,
        {"customer_id": customer_id, "tracking_guid": tracking_guid, "force": force,
         "attempts": attempts, "first_attempt_at": first_attempt_at,
         "single_write": single_write},
    )
    return {**_result(customer_id, outcome, children), "inline": inline}


def _to_burst(c: bootstrap.Container, customer_id: str, tracking_guid: str | None,
              task_id: str | None, force: bool) -> StepOutcome:
    """Leave the customer for the next bulk import job (its batch fetches, maps and
    validates it as the live path does). A customer still in flight in a batch is never
    skipped as unchanged: the fingerprint stored is the one from before that batch."""
    hand_to_burst(c, WaitingSync(
        customer_id, task_id or "", tracking_guid,
        force=force or burst_buffer(c).in_flight(customer_id), queued_at=time.time()))
    return StepOutcome(PROFILE, HANDED_TO_BURST)


@app.task(bind=True, name="ipaas_klaviyo.apply_address", max_retries=None)
def apply_address(
    self: Task,
    customer_id: str,
    profile_id: str,
    collection: str,
    tracking_guid: str | None = None,
    first_attempt_at: float | None = None,
    location_applied: bool = False,
    attempts: int = 0,
    **_earlier: Any,
) -> dict:
    """Make the primary billing address the profile's location; a bad address rejects
    this step only."""
    dropped = dropped_if_deleted(self, ADDRESS, str(customer_id), tracking_guid)
    if dropped is not None:
        return _result(str(customer_id), dropped)

    def work(c: bootstrap.Container) -> StepOutcome:
        sync_address(
            customer_id, profile_id, collection, c.ports, c.mapping,
            default_region=c.settings.default_phone_region, location_applied=location_applied,
        )
        return StepOutcome(ADDRESS, "synced", profile_id=profile_id)

    outcome = run_step(
        self, ADDRESS, customer_id, tracking_guid, work,
        {"customer_id": customer_id, "profile_id": profile_id, "collection": collection,
         "tracking_guid": tracking_guid, "location_applied": location_applied,
         "attempts": attempts, "first_attempt_at": first_attempt_at},
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
    attempts: int = 0,
    **_earlier: Any,
) -> dict:
    """Apply SubscribeProfile, LIST_ and UCLIST_ to the profile.

    With SUBSCRIPTION_BATCH_WINDOW_SECONDS above 0 the actions are queued for a batched
    call (worker.tasks.subscriptions): the flush records this step's outcome and stores this task's
    result, so here nothing is recorded and no result is stored (Ignore). A failure to plan
    or queue is retried or dead-lettered by run_step like any step failure.
    """
    dropped = dropped_if_deleted(self, LISTS, str(customer_id), tracking_guid)
    if dropped is not None:
        return _result(str(customer_id), dropped)
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
                # lost-task sweep's to replace (SubscriptionBuffer.claim_stalled), not this task's.
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
        self, LISTS, customer_id, tracking_guid, work,
        {"customer_id": customer_id, "profile_id": profile_id, "collection": collection,
         "tracking_guid": tracking_guid, "attempts": attempts,
         "first_attempt_at": first_attempt_at},
    )
    return _result(customer_id, outcome)
