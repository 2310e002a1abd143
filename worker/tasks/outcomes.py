"""A finished step's record: its history entry, its structured log line and its metrics."""

from __future__ import annotations

import json
import logging

from worker import bootstrap
from worker.core.errors import StepOutcome

logger = logging.getLogger("ipaas_klaviyo.sync")

def _log(customer_id: str, outcome: StepOutcome, tracking_guid: str | None, ms: float,
         via: str | None = None) -> None:
    # One structured line per step outcome: ids, codes and timings only, no personal data.
    line = {
        "customer_id": customer_id,
        "step": outcome.step,
        "outcome": outcome.outcome,
        "reason": outcome.reason,
        "duration_ms": round(ms, 1),
        "tracking_guid": tracking_guid,
    }
    if via:
        line["via"] = via
    logger.info(json.dumps(line))


def record_outcome(c: bootstrap.Container, customer_id: str, outcome: StepOutcome,
                   tracking_guid: str | None, elapsed_ms: float, *, via: str | None = None
                   ) -> None:
    """History, the structured log line and the metrics of one finished step (``via``:
    "bulk" for a step settled by a burst batch)."""
    c.history.record(customer_id, outcome, tracking_guid=tracking_guid, duration_ms=elapsed_ms,
                     via=via)
    _log(customer_id, outcome, tracking_guid, elapsed_ms, via)
    labels = {"step": outcome.step, "outcome": outcome.outcome}
    c.metrics.incr("syncs_total", {**labels, "via": via} if via else labels)

