"""The backfill's follow-up task: write the links it stored back to iPaaS.com."""

from __future__ import annotations

import logging

from celery import Task

from worker import bootstrap
from worker.celery_app import app
from worker.core.errors import RetryableError
from worker.core.retry import backoff_seconds

logger = logging.getLogger("ipaas_klaviyo.sync")


@app.task(bind=True, name="ipaas_klaviyo.write_back_links", max_retries=None)
def write_back_links(self: Task, customer_ids: list[str], attempt: int = 0) -> int:
    """Write links a backfill stored to iPaaS.com's external-id table, then confirm them.

    Idempotent: a link already confirmed is skipped, so a retried or repeated task only
    finishes what is left. Returns how many links were written.
    """
    c = bootstrap.container()
    written = 0
    try:
        for customer_id in customer_ids:
            profile_id, confirmed = c.links.lookup(customer_id)
            if profile_id is None or confirmed:
                continue
            c.ipaas.update_external_id(customer_id, profile_id)
            c.links.set(customer_id, profile_id)
            written += 1
    except RetryableError as exc:
        if attempt + 1 < c.retry_policy.max_attempts:
            countdown = backoff_seconds(attempt, c.retry_policy, retry_after=exc.retry_after)
            raise self.retry(args=(), kwargs={"customer_ids": customer_ids,
                                              "attempt": attempt + 1},
                             countdown=countdown) from None
        # The links stay unconfirmed: the customer's next sync writes its link back.
        logger.warning("write-back of %d links gave up: %s", len(customer_ids), exc)
    return written
