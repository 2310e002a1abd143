"""The backfill's follow-up task: write the links it stored back to iPaaS.com."""

from __future__ import annotations

import logging
import time

from celery import Task

from worker import bootstrap
from worker.core.retry import GiveUp, RetryIn, attempt
from worker.tasks.celery_app import app
from worker.tasks.dispatch import send_later

logger = logging.getLogger("ipaas_klaviyo.sync")

WRITE_BACK_TASK = "ipaas_klaviyo.write_back_links"


@app.task(bind=True, name=WRITE_BACK_TASK, max_retries=None)
def write_back_links(self: Task, customer_ids: list[str], attempts: int = 0,
                     first_attempt_at: float | None = None, **earlier: int) -> int:
    """Write links a backfill stored to iPaaS.com's external-id table, then confirm them.

    Idempotent: a link already confirmed is skipped, so a retried or repeated task only
    finishes what is left. Returns how many links were written by this run. A failure
    retries (through the scheduled set) what is left, by the one retry rule; when the rule
    gives up the links stay unconfirmed, and each customer's next sync writes its link back.
    (``earlier``: ``attempt``, the name messages from earlier versions carry.)
    """
    attempt_ = int(earlier.get("attempt", 0))
    c = bootstrap.container()
    first = first_attempt_at or time.time()
    written: list[str] = []

    def write_all() -> None:
        for customer_id in customer_ids:
            profile_id, confirmed = c.links.lookup(customer_id)
            if profile_id is None or confirmed:
                continue
            c.ipaas.update_external_id(customer_id, profile_id)
            c.links.set(customer_id, profile_id)
            written.append(customer_id)

    result = attempt(write_all, attempts or attempt_, time.time() - first, c.retry_policy)
    if isinstance(result, RetryIn):
        send_later(WRITE_BACK_TASK, {"customer_ids": customer_ids, "attempts": result.attempts,
                                     "first_attempt_at": first}, result.delay)
    elif isinstance(result, GiveUp):
        logger.warning("write-back of %d links gave up (%s): %s", len(customer_ids),
                       result.reason, result.last_error)
    return len(written)

