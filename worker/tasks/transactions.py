"""The transaction task: iPaaS.com transaction → Placed Order and Ordered Product events.

A thin shell like the customer tasks (worker/tasks/steps.py): ``run_step`` decides done, retry or
dead letter (step ``transaction``, named for the transaction, with its customer when known).
History is filed under ``transaction:{id}`` so ``status --transaction`` finds it; a customer
synced on the way gets its own history entry and its address and lists steps.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from celery import Task

from worker import bootstrap
from worker.adapters.dead_letters import TRANSACTION_STEP
from worker.adapters.pending import PendingSyncs
from worker.adapters.task_ledger import TaskLedger
from worker.adapters.tombstones import Tombstones
from worker.core import reasons
from worker.core.errors import StepOutcome
from worker.core.transactions import customer_id_of
from worker.services.sync_service import ProfileSyncResult
from worker.services.transaction_service import send_order_events
from worker.tasks.celery_app import app
from worker.tasks.dispatch import send_step
from worker.tasks.steps import PROFILE, apply_address, apply_subscriptions, run_step

TRANSACTION = "transaction"  # the intake kind and pending-marker kind
GENERATE_EVENTS_OFF = "generate_events_off"


def history_subject(transaction_id: str) -> str:
    # Transaction and customer ids share one number space: keep their histories apart.
    return f"{TRANSACTION_STEP}:{transaction_id}"


@app.task(bind=True, name="ipaas_klaviyo.sync_transaction", max_retries=None)
def sync_transaction(
    self: Task,
    transaction_id: str,
    tracking_guid: str | None = None,
    first_attempt_at: float | None = None,
    customer_id: str | None = None,
    attempts: int = 0,
    **_earlier: Any,  # arguments only messages from earlier versions carry (limiter_waits)
) -> dict[str, Any]:
    """Fetch and validate one transaction, sync its customer first if unlinked, and send
    the order events that have not gone out yet. Does nothing when GENERATE_EVENTS is off."""
    transaction_id = str(transaction_id)
    c = bootstrap.container()
    PendingSyncs(c.redis).started(TRANSACTION, transaction_id)
    if not c.settings.generate_events:
        TaskLedger(c.redis).finish(self.request.id)
        return _result(transaction_id, customer_id,
                       StepOutcome(TRANSACTION_STEP, "skipped", GENERATE_EVENTS_OFF))
    retry_kwargs: dict[str, Any] = {"transaction_id": transaction_id,
                                    "tracking_guid": tracking_guid, "customer_id": customer_id,
                                    "attempts": attempts, "first_attempt_at": first_attempt_at}
    children: list[str] = []
    sent: list[str] = []

    def customer_synced(synced: ProfileSyncResult) -> None:
        c = bootstrap.container()
        outcome = StepOutcome(PROFILE, "created" if synced.created else "updated",
                              profile_id=synced.profile_id)
        c.history.record(synced.customer_id, outcome, tracking_guid=tracking_guid)
        step_kwargs = {"customer_id": synced.customer_id, "profile_id": synced.profile_id,
                       "collection": synced.collection, "tracking_guid": tracking_guid}
        children.append(send_step(apply_address, {
            **step_kwargs, "location_applied": synced.location_applied}).id)
        children.append(send_step(apply_subscriptions, step_kwargs).id)

    def work(c: bootstrap.Container) -> StepOutcome:
        transaction = c.ipaas.get_transaction(transaction_id)
        # Known from here on: a dead letter or a retry names the customer too.
        retry_kwargs["customer_id"] = customer_id_of(transaction) or customer_id
        if retry_kwargs["customer_id"] and Tombstones(c.redis).is_deleted(
                str(retry_kwargs["customer_id"])):
            # An order of a deleted customer would bring the person back into Klaviyo.
            return StepOutcome(TRANSACTION_STEP, "skipped", reasons.CUSTOMER_DELETED)
        result = send_order_events(
            transaction, transaction_id, c.transaction_ports, c.mapping,
            c.transaction_settings, now=datetime.now(UTC), tracking_guid=tracking_guid,
            on_customer_synced=customer_synced)
        sent.extend(result.metrics)
        return StepOutcome(TRANSACTION_STEP, "synced" if sent else "skipped",
                           profile_id=result.profile_id)

    outcome = run_step(
        self, TRANSACTION_STEP, history_subject(transaction_id), tracking_guid,
        work, retry_kwargs, transaction_id=transaction_id,
    )
    return _result(transaction_id, retry_kwargs["customer_id"], outcome, children, sent)


def _result(transaction_id: str, customer_id: str | None, outcome: StepOutcome,
            children: list[str] | None = None, events: list[str] | None = None
            ) -> dict[str, Any]:
    return {
        "transaction_id": transaction_id,
        "customer_id": customer_id,
        "step": outcome.step,
        "outcome": outcome.outcome,
        "reason": outcome.reason,
        "profile_id": outcome.profile_id,
        "errors": [e.as_dict() for e in outcome.errors],
        "events": events or [],
        "children": children or [],
    }
