"""Retry decisions: one pure rule for every task, batch and backfill.

``decide`` answers "retry at this delay, or give up with this reason and last error" for a
failed attempt, from the error, the attempts counted so far, the time since the first attempt
and the policy. ``attempt`` runs one attempt of a piece of work and returns what happened
(done, retry, give up); the Celery tasks act on it by scheduling the retry in Redis
(worker/tasks/dispatch.py) or dead-lettering, the backfills by sleeping and calling again
(``call_with_retries``). Nothing here sleeps, reads a clock of its own or touches a queue.

Full jitter (a uniform draw between 0 and the exponential ceiling) spreads retries of many
customers that failed together, so a Klaviyo hiccup does not come back as a thundering herd.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from worker.core import reasons
from worker.core.errors import FieldError, FinalError, RateLimited, RetryableError

T = TypeVar("T")
Rand = Callable[[], float]


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8  # attempts in all, the first included
    base_seconds: float = 2.0
    cap_seconds: float = 600.0
    max_total_seconds: float = 6 * 3600.0


def backoff_seconds(
    retries_done: int,
    policy: RetryPolicy,
    *,
    retry_after: float | None = None,
    rand: Rand = random.random,
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


@dataclass(frozen=True)
class Done(Generic[T]):
    """The attempt succeeded with ``value``."""

    value: T


@dataclass(frozen=True)
class RetryIn:
    """Try again after ``delay`` seconds; ``attempts`` is the count to carry to the next
    attempt (a wait for our own rate limiter does not add one: nothing was sent)."""

    delay: float
    attempts: int
    last_error: str
    unexpected: bool = False  # not a classified error: worth a stack trace in the log
    exception: BaseException | None = field(default=None, compare=False)


@dataclass(frozen=True)
class GiveUp:
    """Stop: dead-letter with ``reason`` (a validation or Klaviyo refusal carries its field
    errors; an exhausted budget carries the last error)."""

    reason: str
    last_error: str
    errors: list[FieldError] = field(default_factory=list)
    exception: BaseException | None = field(default=None, compare=False)


Decision = RetryIn | GiveUp


def describe(error: BaseException) -> str:
    """The text kept of an error: a classified error's message (ids and codes only, by
    construction), an unexpected error's type alone (its message may hold data)."""
    return str(error) if isinstance(error, RetryableError | FinalError) else type(error).__name__


def decide(error: BaseException, attempts_done: int, elapsed_seconds: float,
           policy: RetryPolicy, *, rand: Rand = random.random) -> Decision:
    """The one retry rule.

    ``attempts_done``: failed attempts counted before this one. A FinalError gives up at once
    with its own reason. A wait for our own limiter (RateLimited) retries without counting an
    attempt. Anything else (a RetryableError, or an unexpected error, which is never dropped)
    counts one; it retries while both budgets allow, else gives up as ``retries_exhausted``.
    The total-time budget holds for limiter waits too, so nothing waits forever.
    """
    last_error = describe(error)
    if isinstance(error, FinalError):
        return GiveUp(error.reason, last_error, list(error.errors), error)
    counted = not isinstance(error, RateLimited)
    attempts = attempts_done + 1 if counted else attempts_done
    if attempts >= policy.max_attempts or elapsed_seconds >= policy.max_total_seconds:
        return GiveUp(reasons.RETRIES_EXHAUSTED, last_error, [], error)
    retry_after = error.retry_after if isinstance(error, RetryableError) else None
    delay = backoff_seconds(max(0, attempts - 1), policy, retry_after=retry_after, rand=rand)
    return RetryIn(delay, attempts, last_error,
                   unexpected=not isinstance(error, RetryableError | FinalError), exception=error)


def attempt(work: Callable[[], T], attempts_done: int, elapsed_seconds: float,
            policy: RetryPolicy, *, rand: Rand = random.random) -> Done[T] | Decision:
    """Run ``work`` once: Done with its value, or the decision about its error."""
    try:
        return Done(work())
    except Exception as exc:
        return decide(exc, attempts_done, elapsed_seconds, policy, rand=rand)


def call_with_retries(
    call: Callable[[], T],
    policy: RetryPolicy,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> T:
    """Run ``call`` until it succeeds or the rule gives up, sleeping between attempts (the
    backfills, which run in one process, retry in place). Giving up re-raises the error."""
    attempts, started = 0, clock()
    while True:
        outcome = attempt(call, attempts, clock() - started, policy)
        if isinstance(outcome, Done):
            return outcome.value
        if isinstance(outcome, GiveUp):
            assert outcome.exception is not None
            raise outcome.exception
        attempts = outcome.attempts
        sleep(outcome.delay)
