"""The subscription and list step as a service over ports: plan it (map, parse the
directives, resolve list names) and send it, now or — with batching — later, in a batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from worker.core import reasons
from worker.core.directives import parse_directives
from worker.core.errors import FieldError, FinalError, ValidationFailed
from worker.core.mapping import MappingCollections
from worker.core.model import ListRef, MappedCustomer, SubscriptionTarget
from worker.core.ports import ListDirectory
from worker.core.subscriptions import (
    REMOVE_FROM_LIST,
    SUBSCRIBE,
    UNSUBSCRIBE,
    SubscriptionAction,
    lists_named,
    plan_subscriptions,
)
from worker.services.sync_service import Ports, mapped_for_step

CUSTOM_SOURCE = "iPaaS.com sync"
# UCLIST_ subscriptions are historical imports: Klaviyo wants a consent time in the past.
_CONSENT_BACKDATE = timedelta(minutes=1)


@dataclass(frozen=True)
class SubscriptionPlan:
    """The lists step worked out and ready to send: its actions, their lists' ids and
    what a consent call needs to name the person."""

    actions: list[SubscriptionAction]
    list_ids: dict[str, str]
    email: str | None
    phone_number: str | None
    consented_at: str  # for historical imports (UCLIST_): a moment just past

    def list_id(self, action: SubscriptionAction) -> str | None:
        return self.list_ids.get(action.list_name) if action.list_name else None


def plan_subscription_step(
    customer_id: str,
    profile_id: str,
    collection: str,
    ports: Ports,
    mapping: MappingCollections,
    *,
    default_region: str,
    now: datetime,
) -> SubscriptionPlan:
    """Map, parse the directives, plan and resolve list names; a bad flag or an unknown
    list rejects the step here, before anything is sent or queued."""
    assert ports.lists is not None
    mapped = mapped_for_step(customer_id, profile_id, collection, ports, mapping, default_region)
    directives, errors = parse_directives(mapped)
    if errors:
        raise ValidationFailed(errors)
    # Which lists the plan names does not depend on their opt-in process; whether
    # SubscribeProfile may ride on one of them does, so resolve first, then plan.
    lists = _resolve_lists(lists_named(plan_subscriptions(directives)), mapped, ports.lists)
    actions = plan_subscriptions(directives, lambda name: lists[name].subscribes_at_once)
    return SubscriptionPlan(
        actions=actions,
        list_ids={name: ref.id for name, ref in lists.items()},
        email=mapped.attributes.get("email"),
        phone_number=mapped.attributes.get("phone_number"),
        consented_at=(now - _CONSENT_BACKDATE).isoformat(),
    )


def send_subscription_plan(plan: SubscriptionPlan, profile_id: str, ports: Ports) -> None:
    """Send the plan's actions for this one customer, one call each."""
    assert ports.subscriptions is not None
    email, phone = plan.email, plan.phone_number
    for action in plan.actions:
        list_id = plan.list_id(action)
        if action.kind == SUBSCRIBE:
            target = SubscriptionTarget(
                email=email,
                phone_number=phone,
                profile_id=profile_id,
                consented_at=plan.consented_at if action.historical_import else None,
            )
            ports.subscriptions.subscribe(
                [target],
                list_id=list_id,
                historical_import=action.historical_import,
                custom_source=CUSTOM_SOURCE,
            )
        elif action.kind == UNSUBSCRIBE:
            target = SubscriptionTarget(email=email, phone_number=phone)
            ports.subscriptions.unsubscribe([target], list_id=list_id)
        elif action.kind == REMOVE_FROM_LIST and list_id is not None:
            ports.subscriptions.remove_profiles_from_list(list_id, [profile_id])


def sync_subscriptions(
    customer_id: str,
    profile_id: str,
    collection: str,
    ports: Ports,
    mapping: MappingCollections,
    *,
    default_region: str,
    now: datetime,
) -> list[SubscriptionAction]:
    """Apply SubscribeProfile, LIST_ and UCLIST_ directives; returns what was done."""
    plan = plan_subscription_step(customer_id, profile_id, collection, ports, mapping,
                                  default_region=default_region, now=now)
    send_subscription_plan(plan, profile_id, ports)
    return plan.actions


def _resolve_lists(
    names: list[str], mapped: MappedCustomer, lists: ListDirectory
) -> dict[str, ListRef]:
    resolved: dict[str, ListRef] = {}
    unknown: list[FieldError] = []
    for name in names:
        found = lists.lookup(name)
        if found is None:
            unknown.append(
                FieldError(_directive_name(name, mapped), reasons.UNKNOWN_LIST,
                           "no Klaviyo list has this name")
            )
        else:
            resolved[name] = found
    if unknown:
        raise FinalError("unknown Klaviyo list", reason=reasons.UNKNOWN_LIST, errors=unknown)
    return resolved


def _directive_name(list_name: str, mapped: MappedCustomer) -> str:
    for destination in mapped.directives:
        if destination.split("_", 1)[-1] == list_name:
            return destination
    return f"LIST_{list_name}"
