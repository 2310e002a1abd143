"""The scheduled reconcile: Celery beat sends ``ipaas_klaviyo.reconcile`` every
RECONCILE_INTERVAL_SECONDS and a worker runs one pass per kind, under the same fleet-wide
lock as the ``ipaas-klaviyo reconcile`` command.

No Celery retry: a pass that fails keeps its checkpoint and the next tick resumes it.
"""

from __future__ import annotations

import logging
from typing import Any

from worker import bootstrap
from worker.celery_app import app

logger = logging.getLogger("ipaas_klaviyo.reconcile")


@app.task(name="ipaas_klaviyo.reconcile")
def reconcile() -> list[dict[str, Any]]:
    """Customers, then transactions when GENERATE_EVENTS is on; one result per kind."""
    from producers.reconcile import ReconcileBusy, ReconcileOptions, Reconciler, scheduled_kinds

    c = bootstrap.container()
    reconciler = Reconciler(c)
    results: list[dict[str, Any]] = []
    for kind in scheduled_kinds(c.settings, reconciler):
        try:
            report = reconciler.run(ReconcileOptions.from_settings(c.settings, kind))
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
    return results
