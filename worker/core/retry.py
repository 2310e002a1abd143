"""Retry decisions: a pure backoff function and the give-up rule.

Full jitter (a uniform draw between 0 and the exponential ceiling) spreads retries of many
customers that failed together, so a Klaviyo hiccup does not come back as a thundering herd.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from worker.core.errors import RetryableError

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8  # attempts in all, the first included
    base_seconds: float = 2.0
    cap_seconds: float = 600.0  # must stay below the broker's visibility timeout
    max_total_seconds: float = 6 * 3600.0


def backoff_seconds(
    retries_done: int,
    policy: RetryPolicy,
    *,
    retry_after: float | None = None,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before the next attempt, after ``retries_done`` retries so far.

    A server's ``Retry-After`` is a floor (waiting less only earns another 429); jitter is
    added on top so throttled workers do not all come back in the same second.
    """
    ceiling = min(policy.cap_seconds, policy.base_seconds * (2 ** max(0, retries_done)))
    delay = rand() * ceiling
    if retry_after is not None:
        delay = max(delay, retry_after + rand() * min(1.0, ceiling))
    return min(delay, policy.cap_seconds)


def should_retry(attempts_made: int, elapsed_seconds: float, policy: RetryPolicy) -> bool:
    """True while both the attempt budget and the total-time budget allow another try."""
    return attempts_made < policy.max_attempts and elapsed_seconds < policy.max_total_seconds


def call_with_retries(
    call: Callable[[], T],
    policy: RetryPolicy,
    sleep: Callable[[float], None],
) -> T:
    """Run ``call``, retrying RetryableError with backoff up to the policy's attempts (for
    long-running producers such as the backfills, which retry in place, not via Celery)."""
    attempt = 0
    while True:
        try:
            return call()
        except RetryableError as exc:
            attempt += 1
            if attempt >= policy.max_attempts:
                raise
            sleep(backoff_seconds(attempt - 1, policy, retry_after=exc.retry_after))
