"""Celery shells for consent-sync (scheduled by beat) and erasure (one customer).

consent-sync runs in slices like reconcile: each task stops at half the task time limit
with its cursor saved and sends the next slice at once, so no task comes near the limit.
No retry of its own: a pass that fails keeps its cursor and the next tick resumes it.
The erase step is a customer step like any other: run_step retries it through the
scheduled set and dead-letters it when the one retry rule gives up.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import Task

from worker import bootstrap
from worker.adapters.pending import PendingSyncs
from worker.adapters.step_deadline import step_deadline
from worker.core.errors import StepOutcome
from worker.services.consent_sync import ConsentSync, ConsentSyncBusy
from worker.services.erasure import ERASE_STEP, erase_customer
from worker.tasks.celery_app import app
from worker.tasks.dispatch import send_later
from worker.tasks.steps import STEP_DEADLINE_MARGIN_SECONDS, run_step

logger = logging.getLogger("ipaas_klaviyo.consent")

CONSENT_SYNC_TASK = "ipaas_klaviyo.consent_sync"
FORGET_TASK = "ipaas_klaviyo.forget_customer"
ERASE_KIND = "customer_deleted"  # the pending-claim kind of a queued erasure


@app.task(name=CONSENT_SYNC_TASK)
def consent_sync() -> dict[str, Any]:
    c = bootstrap.container()
    limit = c.settings.task_time_limit_seconds
    deadline = time.monotonic() + limit / 2
    try:
        # Limiter waits end in time for the task to finish inside its time limit.
        with step_deadline(limit - STEP_DEADLINE_MARGIN_SECONDS):
            report = ConsentSync(c).run(deadline=deadline)
    except ConsentSyncBusy:
        logger.info("consent-sync: another pass is running; skipped")
        return {"skipped": "another consent-sync is running"}
    except Exception as exc:
        # Types only: an exception's text may carry data. The cursor stays.
        logger.warning("consent-sync failed (%s); the next run resumes", type(exc).__name__)
        return {"failed": type(exc).__name__}
    logger.info(report.summary())
    result = report.as_dict()
    if not report.finished and report.stopped is None:
        send_later(CONSENT_SYNC_TASK, {}, 0.0)
        result["continues"] = True
    return result


@app.task(bind=True, name=FORGET_TASK, max_retries=None)
def forget_customer(self: Task, customer_id: str, tracking_guid: str | None = None,
                    source: str = "webhook", first_attempt_at: float | None = None,
                    attempts: int = 0, **_earlier: Any) -> dict[str, Any]:
    """Tombstone the customer, unlink it and, when configured, delete its Klaviyo profile."""
    customer_id = str(customer_id)
    PendingSyncs(bootstrap.container().redis).started(ERASE_KIND, customer_id)

    def work(c: bootstrap.Container) -> StepOutcome:
        return erase_customer(c, customer_id, source)

    outcome = run_step(self, ERASE_STEP, customer_id, tracking_guid, work,
                       {"customer_id": customer_id, "tracking_guid": tracking_guid,
                        "source": source, "attempts": attempts,
                        "first_attempt_at": first_attempt_at})
    return {"customer_id": customer_id, "step": outcome.step, "outcome": outcome.outcome,
            "reason": outcome.reason, "profile_id": outcome.profile_id}
