"""The subscription and list step as a plan: which Klaviyo consent and list calls a
customer's directives ask for (README, "Subscriptions and lists")."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from worker.core.model import Directives

SUBSCRIBE = "subscribe"
UNSUBSCRIBE = "unsubscribe"
REMOVE_FROM_LIST = "remove_from_list"


@dataclass(frozen=True)
class SubscriptionAction:
    kind: str  # SUBSCRIBE | UNSUBSCRIBE | REMOVE_FROM_LIST
    list_name: str | None = None
    historical_import: bool = False  # UCLIST_: subscribed at once, no consent email


def plan_subscriptions(
    directives: Directives, subscribes_at_once: Callable[[str], bool] = lambda name: False
) -> list[SubscriptionAction]:
    """Turn parsed directives into calls, in the order they must run.

    - ``SubscribeProfile=false`` unsubscribes (no list: a global email unsubscribe) and
      skips every list subscription, so a person who said no is never re-subscribed.
    - ``SubscribeProfile=true`` gives email marketing consent with a subscribe job without a
      list, so the account's own opt-in setting applies. It rides on a list subscription only
      when that subscription makes the profile SUBSCRIBED at once: a ``UCLIST_`` list
      (historical import) or a list for which ``subscribes_at_once(name)`` says so (single
      opt-in). A double opt-in list leaves consent pending until the person confirms, so it
      never stands in for the consent job.
    - ``LIST_x``/``UCLIST_x`` false removes the profile from list x; consent is untouched.
    """
    actions: list[SubscriptionAction] = []
    opted_out = directives.subscribe_profile is False
    if opted_out:
        actions.append(SubscriptionAction(UNSUBSCRIBE))
    joins = [d for d in directives.lists if d.member and not opted_out]
    for directive in joins:
        actions.append(
            SubscriptionAction(SUBSCRIBE, directive.name, historical_import=directive.consented)
        )
    carried = any(d.consented or subscribes_at_once(d.name) for d in joins)
    if directives.subscribe_profile is True and not carried:
        actions.append(SubscriptionAction(SUBSCRIBE))
    for directive in directives.lists:
        if not directive.member:
            actions.append(SubscriptionAction(REMOVE_FROM_LIST, directive.name))
    return actions


def lists_named(actions: list[SubscriptionAction]) -> list[str]:
    """Every list name the plan needs resolved to an id, without repeats, in order."""
    seen: dict[str, None] = {}
    for action in actions:
        if action.list_name is not None:
            seen.setdefault(action.list_name, None)
    return list(seen)
