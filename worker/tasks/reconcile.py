"""The scheduled reconcile: Celery beat sends ``ipaas_klaviyo.reconcile`` every
RECONCILE_INTERVAL_SECONDS and a worker runs one pass per kind, under the same fleet-wide
lock as the ``ipaas-klaviyo reconcile`` command.

A pass runs in slices: each task stops after the page that uses up half the task time limit
(its checkpoint saved) and sends the next slice at once, so no task comes near the limit
or the broker's visibility timeout, however many records a pass reads. No retry: a pass that
fails keeps its checkpoint and the next tick resumes it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from worker import bootstrap
from worker.services.reconcile import (
    ReconcileBusy,
    ReconcileOptions,
    Reconciler,
    scheduled_kinds,
)
from worker.tasks.celery_app import app
from worker.tasks.dispatch import send_later

logger = logging.getLogger("ipaas_klaviyo.reconcile")

RECONCILE_TASK = "ipaas_klaviyo.reconcile"


@app.task(name=RECONCILE_TASK)
def reconcile() -> list[dict[str, Any]]:
    """Customers, then transactions when GENERATE_EVENTS is on; one result per kind."""
    c = bootstrap.container()
    reconciler = Reconciler(c)
    deadline = time.monotonic() + c.settings.task_time_limit_seconds / 2
    results: list[dict[str, Any]] = []
    for kind in scheduled_kinds(c.settings, reconciler):
        if time.monotonic() >= deadline:
            _continue_later(results)
            break
        try:
            report = reconciler.run(ReconcileOptions.from_settings(c.settings, kind),
                                    deadline=deadline)
        except ReconcileBusy:
            logger.info("reconcile %s: another reconcile is running; skipped", kind)
            results.append({"kind": kind, "skipped": "another reconcile is running"})
            continue
        except Exception as exc:
            # Types only: an exception's text may carry data. The checkpoint stays.
            logger.warning("reconcile %s failed (%s); the next run resumes", kind,
                           type(exc).__name__)
            results.append({"kind": kind, "failed": type(exc).__name__})
            continue
        logger.info(report.summary())
        results.append(report.as_dict())
        if not report.finished:
            _continue_later(results)
            break
    return results


def _continue_later(results: list[dict[str, Any]]) -> None:
    """The next slice: each kind resumes at its checkpoint (a finished kind's next pass
    only finds what changed since)."""
    send_later(RECONCILE_TASK, {}, 0.0)
    results.append({"continues": True})
