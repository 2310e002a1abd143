"""Pure pieces of the bulk backfill: one customer prepared for a bulk import job, and the
batcher that groups subscription work across customers into Klaviyo's batch sizes.

A backfill applies the same mapping and validation as the live path; only the transport
differs (bulk import jobs instead of one profile-import call per customer).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from worker.core.directives import parse_directives
from worker.core.errors import FieldError, headline_reason
from worker.core.mapping import MappingCollections, map_customer, profile_attributes
from worker.core.model import MappingContext
from worker.core.subscriptions import (
    REMOVE_FROM_LIST,
    SUBSCRIBE,
    UNSUBSCRIBE,
    SubscriptionAction,
    plan_subscriptions,
)
from worker.core.validation import validate_address, validate_profile

# Klaviyo's per-call limits: subscribe jobs and list-membership calls take 1,000 profiles,
# unsubscribe jobs 100.
BATCH_LIMITS = {SUBSCRIBE: 1000, UNSUBSCRIBE: 100, REMOVE_FROM_LIST: 1000}


@dataclass(frozen=True)
class Rejection:
    customer_id: str | None
    step: str  # "profile" | "address" | "lists"
    reason: str
    errors: list[FieldError]


@dataclass
class PreparedCustomer:
    customer_id: str
    attributes: dict[str, Any]  # profile-import attributes, location included when valid
    actions: list[SubscriptionAction]
    collection: str


@dataclass
class Preparation:
    prepared: PreparedCustomer | None  # None: the profile itself was rejected
    rejections: list[Rejection] = field(default_factory=list)


def prepare_customer(
    customer: dict[str, Any],
    linked_profile_id: str | None,
    mapping: MappingCollections,
    default_region: str,
    subscribes_at_once: Callable[[str], bool] = lambda name: False,
) -> Preparation:
    """``subscribes_at_once(list name)``: whether joining that list makes the profile
    SUBSCRIBED at once (single opt-in), so SubscribeProfile needs no consent job of its own."""
    mapped = map_customer(customer, mapping, MappingContext(linked_profile_id, default_region))
    cid = mapped.customer_id
    profile_errors = validate_profile(mapped)
    if profile_errors:
        return Preparation(None, [_rejection(cid, "profile", profile_errors)])
    assert cid is not None  # validate_profile rejects a missing id
    rejections: list[Rejection] = []
    attributes = profile_attributes(mapped)
    location, address_errors = validate_address(mapped)
    if address_errors or location is None:
        rejections.append(_rejection(cid, "address", address_errors))
    else:
        attributes["location"] = location
    directives, flag_errors = parse_directives(mapped)
    actions: list[SubscriptionAction] = []
    if flag_errors:
        rejections.append(_rejection(cid, "lists", flag_errors))
    else:
        actions = plan_subscriptions(directives, subscribes_at_once)
    return Preparation(PreparedCustomer(cid, attributes, actions, mapped.collection), rejections)


def _rejection(customer_id: str | None, step: str, errors: list[FieldError]) -> Rejection:
    return Rejection(customer_id, step, headline_reason(errors), errors)


BatchKey = tuple[str, str | None, bool]  # (kind, list name, historical import)


@dataclass(frozen=True)
class BatchItem:
    customer_id: str
    profile_id: str
    email: str | None
    phone_number: str | None


class SubscriptionBatcher:
    """Groups subscription actions of many customers by (kind, list, historical import),
    handing back a batch as soon as it is full and the rest on ``drain``."""

    def __init__(self, limits: dict[str, int] | None = None) -> None:
        self._limits = limits or BATCH_LIMITS
        self._open: dict[BatchKey, list[BatchItem]] = defaultdict(list)

    def add(self, action: SubscriptionAction, item: BatchItem
            ) -> tuple[BatchKey, list[BatchItem]] | None:
        key = (action.kind, action.list_name, action.historical_import)
        batch = self._open[key]
        batch.append(item)
        if len(batch) >= self._limits[action.kind]:
            del self._open[key]
            return key, batch
        return None

    def drain(self) -> Iterator[tuple[BatchKey, list[BatchItem]]]:
        while self._open:
            key, batch = self._open.popitem()
            if batch:
                yield key, batch

    def pending(self) -> int:
        return sum(len(batch) for batch in self._open.values())
