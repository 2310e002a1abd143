from __future__ import annotations

from worker.core.model import Directives, ListDirective, ListRef
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


def test_a_double_opt_in_list_never_stands_in_for_subscribe_profile() -> None:
    # "A" is not known to subscribe at once: joining it leaves consent pending.
    plan = plan_subscriptions(Directives(True, [ListDirective("A", False, True)]))
    assert plan == [SubscriptionAction(SUBSCRIBE, "A", False), SubscriptionAction(SUBSCRIBE)]


def test_consent_rides_on_a_single_opt_in_list() -> None:
    plan = plan_subscriptions(Directives(True, [ListDirective("A", False, True)]),
                              lambda name: name == "A")
    assert plan == [SubscriptionAction(SUBSCRIBE, "A", False)]


def test_consent_rides_on_a_uclist_historical_import() -> None:
    plan = plan_subscriptions(Directives(True, [ListDirective("A", False, True),
                                                ListDirective("B", True, True)]))
    assert plan == [
        SubscriptionAction(SUBSCRIBE, "A", False),
        SubscriptionAction(SUBSCRIBE, "B", True),
    ]


def test_single_opt_in_list_being_left_does_not_carry_consent() -> None:
    plan = plan_subscriptions(Directives(True, [ListDirective("A", False, False)]),
                              lambda name: True)
    assert plan == [SubscriptionAction(SUBSCRIBE), SubscriptionAction(REMOVE_FROM_LIST, "A")]


def test_list_joins_without_subscribe_profile_send_no_consent_job() -> None:
    plan = plan_subscriptions(Directives(None, [ListDirective("A", False, True)]))
    assert plan == [SubscriptionAction(SUBSCRIBE, "A", False)]


def test_list_ref_subscribes_at_once_only_for_single_opt_in() -> None:
    assert ListRef("L", "single_opt_in").subscribes_at_once
    assert not ListRef("L", "double_opt_in").subscribes_at_once
    assert not ListRef("L").subscribes_at_once  # unknown: consent is never assumed


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
