"""Checks on an iPaaS.com transaction before it becomes Klaviyo events.

Pure. Problems are reported with field names and reason codes, never the values (a line's
description or an email would be personal or commercial data in a dead-letter entry).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from worker.core import reasons
from worker.core.errors import FieldError, ValidationFailed

AMOUNT_FIELDS = ("discount_amount", "tax_amount", "shipping_amount", "subtotal", "total",
                 "total_qty")
LINE_AMOUNT_FIELDS = ("qty", "unit_price", "extended_price", "discount_amount")
PLACED, CANCELLED, REFUNDED = "placed", "cancelled", "refunded"
# iPaaS.com statuses are free text set by each merchant's systems: match on the word.
_STATUS_WORDS = {CANCELLED: ("cancel",), REFUNDED: ("refund",)}


def text_id(value: object) -> str | None:
    """An id as text: numbers and strings alike; None, booleans and blanks are no id."""
    if value is None or isinstance(value, bool):
        return None
    return str(value).strip() or None


def transaction_id(transaction: dict[str, Any]) -> str | None:
    return text_id(transaction.get("id"))


def customer_id_of(transaction: dict[str, Any]) -> str | None:
    return text_id(transaction.get("customer_id"))


def email_of(transaction: dict[str, Any]) -> str | None:
    email = transaction.get("email_address")
    return email.strip().lower() or None if isinstance(email, str) else None


def as_number(value: object) -> float | None:
    """A finite number from a JSON number or numeric text; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def lines_of(transaction: dict[str, Any]) -> list[dict[str, Any]]:
    lines = transaction.get("lines")
    return [line for line in lines if isinstance(line, dict)] if isinstance(lines, list) else []


def line_sku(line: dict[str, Any]) -> str | None:
    sku = line.get("sku")
    return str(sku).strip() or None if sku is not None else None


def validate_transaction(
    transaction: dict[str, Any], *, reject_duplicate_skus: bool = True
) -> list[FieldError]:
    """Every problem that keeps the transaction from becoming order events."""
    errors: list[FieldError] = []

    def invalid(field: str, message: str) -> None:
        errors.append(FieldError(field, reasons.INVALID_TRANSACTION, message))

    if transaction_id(transaction) is None:
        invalid("id", "the transaction has no id")
    if customer_id_of(transaction) is None and email_of(transaction) is None:
        errors.append(FieldError("customer_id", reasons.MISSING_CUSTOMER,
                                 "neither a customer id nor an email address"))
    for name in AMOUNT_FIELDS:
        if transaction.get(name) is not None and as_number(transaction[name]) is None:
            invalid(name, "not a number")
    lines = lines_of(transaction)
    if not lines:
        invalid("lines", "the transaction has no lines")
    for index, line in enumerate(lines):
        where = f"lines[{index}]"
        if line_sku(line) is None:
            invalid(f"{where}.sku", "the line has no SKU")
        if line.get("qty") is None:
            invalid(f"{where}.qty", "the line has no quantity")
        for name in LINE_AMOUNT_FIELDS:
            if line.get(name) is not None and as_number(line[name]) is None:
                invalid(f"{where}.{name}", "not a number")
    if reject_duplicate_skus:
        counts = Counter(sku for sku in map(line_sku, lines) if sku is not None)
        for index, line in enumerate(lines):
            sku = line_sku(line)
            if sku is not None and counts[sku] > 1:
                errors.append(FieldError(f"lines[{index}].sku", reasons.DUPLICATE_SKU,
                                         "the same SKU appears on another line"))
    return errors


def check_transaction(
    transaction: dict[str, Any], *, reject_duplicate_skus: bool = True
) -> None:
    """Raise ValidationFailed naming every problem (headline reason by priority)."""
    errors = validate_transaction(transaction, reject_duplicate_skus=reject_duplicate_skus)
    if errors:
        raise ValidationFailed(errors)


def status_kind(transaction: dict[str, Any]) -> str | None:
    """CANCELLED or REFUNDED when the status says so, else None."""
    status = transaction.get("status")
    if not isinstance(status, str):
        return None
    lowered = status.lower()
    for kind, words in _STATUS_WORDS.items():
        if any(word in lowered for word in words):
            return kind
    return None
