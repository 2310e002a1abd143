"""The pure transaction core: validation reason codes, event building, the events section
of the mapping file."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from worker.core import reasons
from worker.core.errors import ValidationFailed
from worker.core.events import (
    EventSettings,
    build_order_events,
    build_status_event,
    event_attributes,
    event_time,
)
from worker.core.mapping_file import MappingFileError, load_mapping
from worker.core.transactions import (
    CANCELLED,
    REFUNDED,
    check_transaction,
    status_kind,
    validate_transaction,
)

MAPPING = load_mapping(None)


def order(**changes: Any) -> dict[str, Any]:
    transaction: dict[str, Any] = {
        "id": 5001, "transaction_number": "SO-5001", "customer_id": 1001,
        "email_address": "Ana@Example.com", "type": "Order", "status": "Complete",
        "discount_amount": 5, "tax_amount": "3.20", "shipping_amount": 0, "subtotal": 60,
        "total": 58.2, "total_qty": 3, "created_datetime": "2026-03-04T10:11:12.345-05:00",
        "lines": [
            {"id": 1, "sequence_number": 1, "sku": "MUG-BLUE", "description": "Blue Mug",
             "qty": 2, "unit_price": 20, "extended_price": 40},
            {"id": 2, "sequence_number": 2, "sku": "TEA-01", "description": "Green Tea",
             "qty": 1, "unit_price": "20.00", "extended_price": 20},
        ],
    }
    transaction.update(changes)
    return transaction


def reasons_of(transaction: dict[str, Any], **options: bool) -> set[str]:
    return {e.reason for e in validate_transaction(transaction, **options)}


def test_a_complete_order_is_valid() -> None:
    assert validate_transaction(order()) == []


@pytest.mark.parametrize("changes, field", [
    ({"id": None}, "id"),
    ({"lines": []}, "lines"),
    ({"total": "58,20"}, "total"),
    ({"discount_amount": True}, "discount_amount"),
])
def test_invalid_transactions_name_the_field(changes: dict[str, Any], field: str) -> None:
    errors = validate_transaction(order(**changes))
    assert [(e.field, e.reason) for e in errors] == [(field, reasons.INVALID_TRANSACTION)]


def test_a_line_without_sku_or_quantity_is_invalid() -> None:
    lines = [{"id": 1, "description": "x", "unit_price": 1},
             {"id": 2, "sku": "B", "qty": 1, "extended_price": "n/a"}]
    errors = validate_transaction(order(lines=lines))
    assert {e.field for e in errors} == {"lines[0].sku", "lines[0].qty",
                                        "lines[1].extended_price"}
    assert all(e.reason == reasons.INVALID_TRANSACTION for e in errors)


def test_duplicate_skus_are_rejected_unless_switched_off() -> None:
    lines = [dict(order()["lines"][0]), dict(order()["lines"][0], id=9)]
    with pytest.raises(ValidationFailed) as raised:
        check_transaction(order(lines=lines))
    assert raised.value.reason == reasons.DUPLICATE_SKU
    assert [e.field for e in raised.value.errors] == ["lines[0].sku", "lines[1].sku"]
    assert reasons_of(order(lines=lines), reject_duplicate_skus=False) == set()


def test_no_customer_and_no_email_is_missing_customer() -> None:
    assert reasons_of(order(customer_id=None, email_address=" ")) == {reasons.MISSING_CUSTOMER}
    assert reasons_of(order(customer_id=None)) == set()  # a guest order with an email


def test_messages_hold_no_values() -> None:
    errors = validate_transaction(order(total="secret-total", lines=[{"description": "Mug"}]))
    text = " ".join(f"{e.field} {e.message}" for e in errors)
    assert "secret" not in text and "Mug" not in text


def test_placed_order_and_one_ordered_product_per_line() -> None:
    events = build_order_events(order(), MAPPING.events, EventSettings(currency="EUR"))
    placed, *products = events
    assert placed.metric == "Placed Order" and placed.unique_id == "5001"
    assert placed.value == 58.2 and placed.value_currency == "EUR"
    assert placed.time == "2026-03-04T15:11:12+00:00"
    assert placed.properties["OrderId"] == "SO-5001"
    assert placed.properties["ItemNames"] == ["Blue Mug", "Green Tea"]
    assert placed.properties["DiscountValue"] == 5
    assert placed.properties["Items"][1] == {"SKU": "TEA-01", "ProductName": "Green Tea",
                                             "Quantity": 1, "ItemPrice": 20.0,
                                             "RowTotal": 20.0}
    assert [p.unique_id for p in products] == ["5001:1", "5001:2"]
    assert products[0].metric == "Ordered Product" and products[0].value == 40
    assert products[0].properties == {"OrderId": "SO-5001", "SKU": "MUG-BLUE",
                                      "ProductName": "Blue Mug", "Quantity": 2,
                                      "ItemPrice": 20, "RowTotal": 40, "Order Qty": 2}


def test_metric_names_are_configurable() -> None:
    settings = EventSettings(placed_order_metric="Order", ordered_product_metric="Item")
    assert [e.metric for e in build_order_events(order(), MAPPING.events, settings)] == [
        "Order", "Item", "Item"]


def test_event_time_truncates_and_normalises() -> None:
    assert event_time("2026-01-02T03:04:05.999") == "2026-01-02T03:04:05+00:00"
    assert event_time("2026-01-02T03:04:05Z") == "2026-01-02T03:04:05+00:00"
    assert event_time("yesterday") is None and event_time(None) is None


def test_event_attributes_match_klaviyos_shape() -> None:
    placed = build_order_events(order(), MAPPING.events, EventSettings())[0]
    attributes = event_attributes(placed, {"id": "01PROFILE"})
    assert attributes["profile"] == {"data": {"type": "profile", "id": "01PROFILE",
                                              "attributes": {}}}
    assert attributes["metric"] == {"data": {"type": "metric",
                                             "attributes": {"name": "Placed Order"}}}
    assert attributes["unique_id"] == "5001"
    guest = event_attributes(placed, {"email": "ana@example.com"})
    assert guest["profile"]["data"] == {"type": "profile",
                                        "attributes": {"email": "ana@example.com"}}


def test_status_kinds_and_status_event() -> None:
    assert status_kind(order(status="Cancelled")) == CANCELLED
    assert status_kind(order(status="PARTIALLY REFUNDED")) == REFUNDED
    assert status_kind(order()) is None
    event = build_status_event(order(status="Cancelled"), CANCELLED, MAPPING.events,
                               EventSettings(), now=datetime(2026, 5, 1, tzinfo=UTC))
    assert event.metric == "Cancelled Order" and event.unique_id == "5001:cancelled"
    assert event.time == "2026-05-01T00:00:00+00:00"


CUSTOM = """
add: [{type: field, source: EmailAddress, destination: Email}]
update: [{type: field, source: EmailAddress, destination: Email}]
events:
  placed_order:
    - {type: field, source: TransactionNumber, destination: Order Number}
    - {type: static, value: web, destination: Channel}
  ordered_product:
    - {type: field, source: Parent.TransactionNumber, destination: Order Number}
    - {type: formula, formula: Upper, args: [Sku], destination: email}
"""


def test_custom_events_section_drives_the_properties() -> None:
    mapping = load_mapping(CUSTOM, source_name="custom.yaml")
    placed, product, _ = build_order_events(order(), mapping.events, EventSettings())
    assert placed.properties == {"Order Number": "SO-5001", "Channel": "web"}
    # Event destinations are plain property names, even one spelled like a profile field.
    assert product.properties == {"Order Number": "SO-5001", "email": "MUG-BLUE"}


def test_a_file_without_events_keeps_the_bundled_events() -> None:
    mapping = load_mapping(CUSTOM.split("events:")[0], source_name="custom.yaml")
    assert mapping.events == MAPPING.events and mapping.events.placed_order


@pytest.mark.parametrize("section, problem", [
    ("  placed_order:\n    - {type: field, source: Sku, destination: X}\n", "unknown field"),
    ("  ordered_product:\n    - {type: field, source: Parent.Nope, destination: X}\n",
     "unknown field"),
    ("  shipped_order: []\n", "unknown events collection"),
    ("  placed_order:\n    - {type: formula, formula: LineValues, args: [Lines, {value: Colour}],"
     " destination: X}\n", "unknown line field"),
])
def test_event_mapping_mistakes_name_the_line(section: str, problem: str) -> None:
    text = CUSTOM.split("events:")[0] + "events:\n" + section
    with pytest.raises(MappingFileError) as raised:
        load_mapping(text, source_name="custom.yaml")
    assert problem in str(raised.value) and "custom.yaml line" in str(raised.value)
