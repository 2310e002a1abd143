"""Formulas for order events: values over a transaction's lines.

Registered in the same registry as the customer formulas, so event mappings call them the
same way (``{type: formula, formula: LineValues, args: [Lines, {value: Description}]}``).
"""

from __future__ import annotations

from typing import Any

from worker.core.formulas import Expr, FormulaEnv, Literal, formula
from worker.core.transaction_fields import LINE_FIELDS
from worker.core.transactions import as_number, line_sku, lines_of


def _check_line_field(args: tuple[Expr, ...]) -> str | None:
    name = args[1]
    if isinstance(name, Literal) and name.value not in LINE_FIELDS:
        return f"unknown line field {name.value!r} (known: {', '.join(sorted(LINE_FIELDS))})"
    return None


def _lines(value: object) -> list[dict[str, Any]]:
    return lines_of({"lines": value})


@formula("LineValues", arity=2, check=_check_line_field)
def line_values(env: FormulaEnv, lines: object, name: object) -> list[Any] | None:
    """One field of every line, in line order (blank values left out)."""
    if not isinstance(name, str) or name not in LINE_FIELDS:
        return None
    key = LINE_FIELDS[name]
    values = [line.get(key) for line in _lines(lines)]
    return [v for v in values if v is not None and str(v).strip()] or None


@formula("OrderItems", arity=1)
def order_items(env: FormulaEnv, lines: object) -> list[dict[str, Any]] | None:
    """Klaviyo's Items list for a Placed Order: SKU, ProductName, Quantity, ItemPrice and
    RowTotal of every line."""
    items = [
        {
            "SKU": line_sku(line),
            "ProductName": line.get("description"),
            "Quantity": whole(as_number(line.get("qty"))),
            "ItemPrice": as_number(line.get("unit_price")),
            "RowTotal": as_number(line.get("extended_price")),
        }
        for line in _lines(lines)
    ]
    return items or None


@formula("Number", arity=1)
def number(env: FormulaEnv, value: object) -> float | None:
    """The value as a number (numeric text included); nothing when it is not one."""
    return whole(as_number(value))


def whole(value: float | None) -> float | None:
    """2.0 → 2: quantities read as counts in Klaviyo's templates and segments."""
    return int(value) if value is not None and value.is_integer() else value
