"""Order events from a transaction: one Placed Order, one Ordered Product per line.

Pure. Properties come from the mapping file's ``events`` collections; the envelope (metric,
value, currency, time, unique_id) is fixed here, because de-duplication and revenue
reporting depend on it: ``unique_id`` is the transaction id (``{id}:{line id}`` per line),
so a redelivered or replayed transaction is recorded once by Klaviyo.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from worker.core.event_mapping import EventCollections
from worker.core.formulas import Call, Expr, FieldRef, FormulaEnv, Literal, is_empty
from worker.core.mapping_rule import Mapping
from worker.core.model import MappingContext
from worker.core.transaction_fields import LINE_FIELDS, PARENT_PREFIX, TRANSACTION_FIELDS
from worker.core.transactions import (
    CANCELLED,
    REFUNDED,
    as_number,
    lines_of,
    text_id,
    transaction_id,
)


@dataclass(frozen=True)
class EventSettings:
    currency: str = "USD"
    placed_order_metric: str = "Placed Order"
    ordered_product_metric: str = "Ordered Product"
    cancelled_order_metric: str = "Cancelled Order"
    refunded_order_metric: str = "Refunded Order"


@dataclass(frozen=True)
class OrderEvent:
    metric: str
    unique_id: str
    properties: dict[str, Any] = field(default_factory=dict)
    value: float | None = None
    value_currency: str | None = None
    time: str | None = None  # ISO 8601 with offset, whole seconds


def event_time(value: object) -> str | None:
    """iPaaS.com's created time as Klaviyo wants it: UTC offset, truncated to the second.
    A time without an offset is taken as UTC; an unreadable one leaves the time out (Klaviyo
    then uses the time it received the event)."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(microsecond=0).isoformat()


def _evaluate(expr: Expr, record: dict[str, Any], parent: dict[str, Any] | None,
              fields: dict[str, str], env: FormulaEnv) -> Any:
    if isinstance(expr, Literal):
        return expr.value
    if isinstance(expr, FieldRef):
        if expr.name.startswith(PARENT_PREFIX) and parent is not None:
            name = expr.name.removeprefix(PARENT_PREFIX)
            return _field(parent, TRANSACTION_FIELDS[name], name)
        return _field(record, fields[expr.name], expr.name)
    assert isinstance(expr, Call)
    return expr.formula.func(env, *(_evaluate(a, record, parent, fields, env) for a in expr.args))


def _field(record: dict[str, Any], key: str, name: str) -> Any:
    value = record.get(key)
    return text_id(value) if name == "Id" else value


def map_properties(mappings: tuple[Mapping, ...], record: dict[str, Any],
                   parent: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run one event collection over a transaction (or over a line, with its transaction
    as ``parent``); empty values are left out."""
    fields = TRANSACTION_FIELDS if parent is None else LINE_FIELDS
    env = FormulaEnv(record, MappingContext())
    properties: dict[str, Any] = {}
    for mapping in mappings:
        value = _evaluate(mapping.expression, record, parent, fields, env)
        if not is_empty(value):
            properties[mapping.destination] = value
    return properties


def line_unique_id(order_id: str, line: dict[str, Any], index: int) -> str:
    # A line without an id falls back to its position: stable for an unchanged order.
    line_id = text_id(line.get("id")) or text_id(line.get("sequence_number")) or f"#{index}"
    return f"{order_id}:{line_id}"


def build_order_events(transaction: dict[str, Any], collections: EventCollections,
                       settings: EventSettings) -> list[OrderEvent]:
    """Placed Order first, then one Ordered Product per line. The transaction must have
    passed ``check_transaction``."""
    order_id = transaction_id(transaction)
    assert order_id is not None, "validate the transaction first"
    time = event_time(transaction.get("created_datetime"))
    events = [OrderEvent(
        metric=settings.placed_order_metric,
        unique_id=order_id,
        properties=map_properties(collections.placed_order, transaction),
        value=as_number(transaction.get("total")),
        value_currency=settings.currency,
        time=time,
    )]
    for index, line in enumerate(lines_of(transaction)):
        events.append(OrderEvent(
            metric=settings.ordered_product_metric,
            unique_id=line_unique_id(order_id, line, index),
            properties=map_properties(collections.ordered_product, line, transaction),
            value=as_number(line.get("extended_price")),
            value_currency=settings.currency,
            time=time,
        ))
    return events


def build_status_event(transaction: dict[str, Any], kind: str, collections: EventCollections,
                       settings: EventSettings, *, now: datetime) -> OrderEvent:
    """A Cancelled Order or Refunded Order event, with the Placed Order's properties; its
    time is when the change was seen (the transaction's update time when it has one)."""
    order_id = transaction_id(transaction)
    assert order_id is not None, "validate the transaction first"
    metric = {CANCELLED: settings.cancelled_order_metric,
              REFUNDED: settings.refunded_order_metric}[kind]
    time = event_time(transaction.get("updated_datetime")) or event_time(now.isoformat())
    return OrderEvent(
        metric=metric,
        unique_id=f"{order_id}:{kind}",
        properties=map_properties(collections.placed_order, transaction),
        value=as_number(transaction.get("total")),
        value_currency=settings.currency,
        time=time,
    )


def event_attributes(event: OrderEvent, profile: dict[str, Any]) -> dict[str, Any]:
    """The event as Klaviyo's ``attributes`` (create_event), for the given profile
    reference (``{"id": ...}`` and/or identifiers)."""
    attributes: dict[str, Any] = {
        "properties": event.properties,
        "metric": {"data": {"type": "metric", "attributes": {"name": event.metric}}},
        "profile": {"data": profile_reference(profile)},
        "unique_id": event.unique_id,
    }
    for name in ("value", "value_currency", "time"):
        value = getattr(event, name)
        if value is not None:
            attributes[name] = value
    return attributes


def profile_reference(profile: dict[str, Any]) -> dict[str, Any]:
    """``{"type": "profile", "id"?, "attributes": {identifiers}}``: the spec requires
    ``attributes`` even when the id alone names the profile."""
    reference: dict[str, Any] = {"type": "profile",
                                 "attributes": {k: v for k, v in profile.items()
                                                if k != "id" and v is not None}}
    if profile.get("id"):
        reference["id"] = profile["id"]
    return reference
