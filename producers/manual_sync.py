"""Manual sync: enqueue customers by id, optionally wait for every step's outcome."""

from __future__ import annotations

import time
from typing import Any

from celery.result import AsyncResult

from worker.tasks.celery_app import app
from worker.tasks.dispatch import send_step
from worker.tasks.steps import sync_customer


def enqueue_customer(customer_id: str, tracking_guid: str | None = None, *,
                     force: bool = False) -> AsyncResult:
    # explicit: a tombstoned customer is dead-lettered (customer_deleted), not dropped quietly.
    kwargs: dict[str, object] = {"customer_id": str(customer_id), "tracking_guid": tracking_guid,
                                 "explicit": True}
    if force:
        kwargs["force"] = True
    return send_step(sync_customer, kwargs)


def wait_for_steps(result: AsyncResult, timeout: float = 120.0) -> list[dict[str, Any]]:
    """The profile step's outcome, then those of the steps it chained (address, lists).

    Raises TimeoutError when the steps did not all finish in time.
    """
    deadline = time.monotonic() + timeout
    first = _get(result, deadline)
    outcomes = [first, *first.get("inline", [])]
    for child_id in first.get("children", []):
        outcomes.append(_get(AsyncResult(child_id, app=app), deadline))
    return outcomes


def _get(result: AsyncResult, deadline: float) -> dict[str, Any]:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError(f"task {result.id} did not finish in time")
    try:
        value = result.get(timeout=remaining, propagate=True, interval=0.05)
    except Exception as exc:
        if "TimeoutError" in type(exc).__name__:
            raise TimeoutError(f"task {result.id} did not finish in time") from None
        raise
    return dict(value)


def is_rejected(outcomes: list[dict[str, Any]]) -> bool:
    return any(o.get("outcome") == "rejected" for o in outcomes)
