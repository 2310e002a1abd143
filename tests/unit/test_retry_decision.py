"""The one retry rule (worker/core/retry.py), for every class of error."""

from __future__ import annotations

import pytest

from worker.core import reasons
from worker.core.errors import (
    FieldError,
    KlaviyoRejected,
    NotFoundError,
    RateLimited,
    RetryableError,
    ThrottledError,
    ValidationFailed,
)
from worker.core.retry import (
    Done,
    GiveUp,
    RetryIn,
    RetryPolicy,
    attempt,
    backoff_seconds,
    call_with_retries,
    decide,
)

POLICY = RetryPolicy(max_attempts=5, base_seconds=2, cap_seconds=60, max_total_seconds=100)


def top(_: float = 0.0) -> float:
    return 1.0


def test_backoff_grows_exponentially_with_full_jitter_and_a_cap() -> None:
    assert backoff_seconds(0, POLICY, rand=lambda: 1.0) == 2
    assert backoff_seconds(3, POLICY, rand=lambda: 1.0) == 16
    assert backoff_seconds(10, POLICY, rand=lambda: 1.0) == 60
    assert backoff_seconds(3, POLICY, rand=lambda: 0.0) == 0


def test_retry_after_is_a_floor_but_never_beyond_the_cap() -> None:
    assert backoff_seconds(0, POLICY, retry_after=7, rand=lambda: 0.0) == 7
    assert backoff_seconds(0, POLICY, retry_after=500, rand=lambda: 0.5) == 60


@pytest.mark.parametrize("error", [
    RetryableError("klaviyo 503"),
    ThrottledError("klaviyo 429", retry_after=3),
    ConnectionError("reset"),
    KeyError("a bug"),
])
def test_transient_and_unexpected_errors_count_an_attempt_and_retry(error: Exception) -> None:
    decision = decide(error, 0, 1.0, POLICY, rand=top)
    assert isinstance(decision, RetryIn)
    assert decision.attempts == 1
    assert decision.delay > 0


def test_an_unexpected_error_keeps_only_its_type() -> None:
    decision = decide(ValueError("jane@example.com is odd"), 0, 1.0, POLICY, rand=top)
    assert isinstance(decision, RetryIn)
    assert decision.last_error == "ValueError"
    assert decision.unexpected
    classified = decide(RetryableError("klaviyo 503 on profile-import"), 0, 1.0, POLICY)
    assert isinstance(classified, RetryIn)
    assert classified.last_error == "klaviyo 503 on profile-import"
    assert not classified.unexpected


def test_retry_after_is_honoured_as_the_delay_floor() -> None:
    decision = decide(ThrottledError("429", retry_after=30), 0, 1.0, POLICY,
                      rand=lambda: 0.0)
    assert isinstance(decision, RetryIn)
    assert decision.delay == 30


@pytest.mark.parametrize("error, reason", [
    (ValidationFailed([FieldError("email", reasons.INVALID_EMAIL, "not an email")]),
     reasons.INVALID_EMAIL),
    (NotFoundError("customer 1 not found"), reasons.CUSTOMER_NOT_FOUND),
    (KlaviyoRejected("klaviyo 400", status=400), reasons.KLAVIYO_REJECTED),
])
def test_final_errors_give_up_at_once_with_their_reason(error: Exception, reason: str) -> None:
    decision = decide(error, 0, 0.0, POLICY)
    assert isinstance(decision, GiveUp)
    assert decision.reason == reason
    assert decision.exception is error


def test_validation_errors_travel_with_the_decision() -> None:
    errors = [FieldError("email", reasons.INVALID_EMAIL, "not an email")]
    decision = decide(ValidationFailed(errors), 3, 0.0, POLICY)
    assert isinstance(decision, GiveUp) and decision.errors == errors


def test_the_attempt_budget_gives_up_as_retries_exhausted_with_the_last_error() -> None:
    assert isinstance(decide(RetryableError("503"), 3, 1.0, POLICY), RetryIn)  # 4th of 5
    decision = decide(RetryableError("klaviyo 503"), 4, 1.0, POLICY)  # the 5th failed
    assert isinstance(decision, GiveUp)
    assert decision.reason == reasons.RETRIES_EXHAUSTED
    assert decision.last_error == "klaviyo 503"


def test_the_total_time_budget_gives_up_even_with_attempts_left() -> None:
    decision = decide(RetryableError("503"), 0, 100.0, POLICY)
    assert isinstance(decision, GiveUp) and decision.reason == reasons.RETRIES_EXHAUSTED


def test_a_limiter_wait_is_never_an_attempt() -> None:
    decision = decide(RateLimited("our limiter", retry_after=2), 4, 10.0, POLICY, rand=top)
    assert isinstance(decision, RetryIn)
    assert decision.attempts == 4  # unchanged: nothing was sent
    assert decision.delay >= 2


def test_limiter_waits_still_end_with_the_total_time_budget() -> None:
    decision = decide(RateLimited("our limiter", retry_after=2), 0, 100.0, POLICY)
    assert isinstance(decision, GiveUp) and decision.reason == reasons.RETRIES_EXHAUSTED


def test_attempt_returns_the_value_or_the_decision() -> None:
    assert attempt(lambda: 7, 0, 0.0, POLICY) == Done(7)

    def fails() -> int:
        raise RetryableError("503")

    assert isinstance(attempt(fails, 0, 0.0, POLICY), RetryIn)


def test_call_with_retries_sleeps_between_attempts_and_re_raises_when_giving_up() -> None:
    slept: list[float] = []
    calls = {"n": 0}

    def flaky() -> str:
        calls["n"] += 1
        if calls["n"] < 3:
            raise RetryableError("503")
        return "ok"

    assert call_with_retries(flaky, POLICY, slept.append, lambda: 0.0) == "ok"
    assert len(slept) == 2

    def always() -> str:
        raise RetryableError("503 forever")

    with pytest.raises(RetryableError, match="503 forever"):
        call_with_retries(always, POLICY, slept.append, lambda: 0.0)


def test_call_with_retries_does_not_retry_a_final_error() -> None:
    calls = {"n": 0}

    def rejected() -> None:
        calls["n"] += 1
        raise KlaviyoRejected("klaviyo 400", status=400)

    with pytest.raises(KlaviyoRejected):
        call_with_retries(rejected, POLICY, lambda _: None, lambda: 0.0)
    assert calls["n"] == 1
