"""The transaction step as a service over ports: fetch, validate, find (or sync) the
customer's profile, send the order events.

Append-only like iPaaS.com's integration: once a transaction's order events went out it is
remembered (``SentOrders``) and later deliveries and updates send nothing — except, when
switched on, one Cancelled/Refunded Order event the first time the status says so. Klaviyo's
``unique_id`` de-duplication covers the gap between sending and remembering.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from worker.core import reasons
from worker.core.errors import FieldError, FinalError, NotFoundError
from worker.core.events import (
    EventSettings,
    OrderEvent,
    build_order_events,
    build_status_event,
    event_attributes,
)
from worker.core.mapping_file import MappingCollections
from worker.core.transactions import (
    PLACED,
    check_transaction,
    customer_id_of,
    email_of,
    status_kind,
    transaction_id,
)
from worker.services.sync_service import Ports, ProfileSyncResult, find_link, sync_profile


class TransactionSource(Protocol):
    def get_transaction(self, transaction_id: str) -> dict[str, Any]: ...


class EventSender(Protocol):
    def create_event(self, event_attributes: dict[str, Any]) -> None: ...


class SentOrders(Protocol):
    """Which order events (PLACED, CANCELLED, REFUNDED) already went out per transaction."""

    def sent(self, transaction_id: str) -> set[str]: ...

    def mark(self, transaction_id: str, kind: str) -> None: ...


@dataclass(frozen=True)
class TransactionSettings:
    events: EventSettings = field(default_factory=EventSettings)
    reject_duplicate_skus: bool = True
    status_events: bool = False
    default_region: str = "US"


@dataclass
class TransactionPorts:
    transactions: TransactionSource
    events: EventSender
    sent: SentOrders
    customers: Ports


@dataclass
class TransactionSyncResult:
    transaction_id: str
    customer_id: str | None
    profile_id: str | None
    metrics: list[str] = field(default_factory=list)  # what was sent, in order
    customer_sync: ProfileSyncResult | None = None  # the customer pipeline ran first

    @property
    def skipped(self) -> bool:
        return not self.metrics


def resolve_profile(
    transaction: dict[str, Any], ports: Ports, mapping: MappingCollections, *,
    default_region: str, tracking_guid: str | None = None,
    on_customer_synced: Callable[[ProfileSyncResult], None] | None = None,
) -> tuple[dict[str, Any], ProfileSyncResult | None]:
    """The event's profile reference: the customer's linked profile, after syncing the
    customer when it has no link yet; a guest order (or a customer iPaaS.com no longer has)
    goes to the profile of its email address."""
    customer_id, email = customer_id_of(transaction), email_of(transaction)
    if customer_id is not None:
        linked, _ = find_link(customer_id, ports)
        if linked:
            return {"id": linked}, None
        try:
            synced = sync_profile(customer_id, ports, mapping, default_region=default_region,
                                  tracking_guid=tracking_guid, on_upserted=on_customer_synced)
        except NotFoundError:
            if email is None:
                raise _missing_customer() from None
        else:
            return {"id": synced.profile_id}, synced
    if email is None:
        raise _missing_customer()
    return {"email": email}, None


def _missing_customer() -> FinalError:
    return FinalError("transaction: no customer to send the events to",
                      reason=reasons.MISSING_CUSTOMER,
                      errors=[FieldError("customer_id", reasons.MISSING_CUSTOMER,
                                         "the customer is unknown and there is no email")])


def events_due(transaction: dict[str, Any], already: set[str], mapping: MappingCollections,
               settings: TransactionSettings, now: datetime) -> list[tuple[str, OrderEvent]]:
    """(kind, event) pairs still to send; empty when everything went out before."""
    due: list[tuple[str, OrderEvent]] = []
    if PLACED not in already:
        due += [(PLACED, e) for e in build_order_events(transaction, mapping.events,
                                                        settings.events)]
    kind = status_kind(transaction) if settings.status_events else None
    if kind is not None and kind not in already:
        due.append((kind, build_status_event(transaction, kind, mapping.events,
                                             settings.events, now=now)))
    return due


def sync_transaction(
    requested_id: str, ports: TransactionPorts, mapping: MappingCollections,
    settings: TransactionSettings, *, now: datetime, tracking_guid: str | None = None,
) -> TransactionSyncResult:
    """Fetch the transaction and send what is due (see ``send_order_events``)."""
    transaction = ports.transactions.get_transaction(requested_id)
    return send_order_events(transaction, requested_id, ports, mapping, settings, now=now,
                             tracking_guid=tracking_guid)


def send_order_events(
    transaction: dict[str, Any], requested_id: str, ports: TransactionPorts,
    mapping: MappingCollections, settings: TransactionSettings, *, now: datetime,
    tracking_guid: str | None = None,
    on_customer_synced: Callable[[ProfileSyncResult], None] | None = None,
) -> TransactionSyncResult:
    """Validate, skip what went out before, resolve the profile, send the rest. Raises
    ValidationFailed, FinalError(missing_customer) or the customer pipeline's errors.

    ``on_customer_synced`` is the customer pipeline's ``on_upserted`` for an unlinked
    customer synced on the way (see ``sync_profile``): the caller sends the customer's own
    next steps there."""
    check_transaction(transaction, reject_duplicate_skus=settings.reject_duplicate_skus)
    order_id = transaction_id(transaction) or requested_id
    result = TransactionSyncResult(order_id, customer_id_of(transaction), None)
    due = events_due(transaction, ports.sent.sent(order_id), mapping, settings, now)
    if not due:
        return result
    profile, result.customer_sync = resolve_profile(
        transaction, ports.customers, mapping, default_region=settings.default_region,
        tracking_guid=tracking_guid, on_customer_synced=on_customer_synced)
    result.profile_id = profile.get("id")
    for _, event in due:
        ports.events.create_event(event_attributes(event, profile))
        result.metrics.append(event.metric)
    for kind in dict.fromkeys(kind for kind, _ in due):
        ports.sent.mark(order_id, kind)
    return result
