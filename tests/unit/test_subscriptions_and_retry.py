from __future__ import annotations

from worker.core.model import Directives, ListDirective
from worker.core.retry import RetryPolicy, backoff_seconds, should_retry
from worker.core.subscriptions import (
    REMOVE_FROM_LIST,
    SUBSCRIBE,
    UNSUBSCRIBE,
    SubscriptionAction,
    plan_subscriptions,
)


def test_subscribe_true_alone_is_one_consent_job() -> None:
    assert plan_subscriptions(Directives(subscribe_profile=True)) == [SubscriptionAction(SUBSCRIBE)]


def test_list_joins_carry_the_consent() -> None:
    plan = plan_subscriptions(Directives(True, [ListDirective("A", False, True),
                                                ListDirective("B", True, True)]))
    assert plan == [
        SubscriptionAction(SUBSCRIBE, "A", False),
        SubscriptionAction(SUBSCRIBE, "B", True),
    ]


def test_subscribe_false_unsubscribes_and_skips_joins_but_keeps_removals() -> None:
    plan = plan_subscriptions(Directives(False, [ListDirective("A", False, True),
                                                 ListDirective("B", False, False)]))
    assert plan == [SubscriptionAction(UNSUBSCRIBE), SubscriptionAction(REMOVE_FROM_LIST, "B")]


def test_nothing_asked_nothing_done() -> None:
    assert plan_subscriptions(Directives()) == []


POLICY = RetryPolicy(max_attempts=5, base_seconds=2, cap_seconds=60, max_total_seconds=100)


def test_backoff_grows_exponentially_with_full_jitter_and_a_cap() -> None:
    assert backoff_seconds(0, POLICY, rand=lambda: 1.0) == 2
    assert backoff_seconds(3, POLICY, rand=lambda: 1.0) == 16
    assert backoff_seconds(10, POLICY, rand=lambda: 1.0) == 60
    assert backoff_seconds(3, POLICY, rand=lambda: 0.0) == 0


def test_retry_after_is_a_floor_but_never_beyond_the_cap() -> None:
    assert backoff_seconds(0, POLICY, retry_after=7, rand=lambda: 0.0) == 7
    assert backoff_seconds(0, POLICY, retry_after=500, rand=lambda: 0.5) == 60


def test_give_up_on_attempts_or_total_time() -> None:
    assert should_retry(4, 10, POLICY)
    assert not should_retry(5, 10, POLICY)
    assert not should_retry(1, 100, POLICY)
