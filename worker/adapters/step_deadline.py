"""The running step's deadline: how long it may still wait for a rate-limit slot.

A task must finish inside its time limit (TASK_TIME_LIMIT_SECONDS), which stays below the
broker's visibility timeout. The task shell opens a deadline around the step's work; the
rate-limited HTTP adapter (worker/adapters/rate_limited_http.py) waits for a slot only as
long as leaves time for the call itself, and otherwise raises RateLimited, which retries the
step later without counting an attempt (nothing was sent). Code outside a step (the
backfills, the CLI) has no deadline and waits up to RATE_LIMIT_MAX_WAIT_SECONDS as before.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_deadline: ContextVar[float | None] = ContextVar("step_deadline", default=None)


@contextmanager
def step_deadline(seconds: float) -> Iterator[None]:
    """Within the block, the step has ``seconds`` (from now) for all its calls."""
    token = _deadline.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


def time_left() -> float | None:
    """Seconds left before the running step's deadline; None outside a step."""
    deadline = _deadline.get()
    return None if deadline is None else deadline - time.monotonic()
