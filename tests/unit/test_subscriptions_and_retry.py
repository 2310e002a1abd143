from __future__ import annotations

from worker.core.model import Directives, ListDirective
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

