from __future__ import annotations

from worker.core.model import Directives, ListDirective, ListRef
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

