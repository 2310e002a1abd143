"""iPaaS.com transactions for tests, the benchmark and the demo (fictitious data)."""

from __future__ import annotations

from typing import Any


def order(transaction_id: int | str, customer_id: int | str | None, *, lines: int = 2,
          email: str | None = None, status: str = "Complete",
          created: str = "2026-11-30T15:04:05.250+00:00") -> dict[str, Any]:
    items = [
        {"id": n, "sequence_number": n, "sku": f"SKU-{n:03d}", "description": f"Product {n}",
         "type": "Item", "qty": n, "unit_price": 12.5, "extended_price": 12.5 * n,
         "discount_amount": 0}
        for n in range(1, lines + 1)
    ]
    subtotal = 12.5 * lines * (lines + 1) / 2
    return {
        "id": transaction_id,
        "transaction_number": f"SO-{transaction_id}",
        "customer_id": customer_id,
        "email_address": email,
        "type": "Order",
        "status": status,
        "discount_amount": 0,
        "tax_amount": 0,
        "shipping_amount": 5,
        "subtotal": subtotal,
        "total": subtotal + 5,
        "total_qty": lines * (lines + 1) // 2,
        "created_datetime": created,
        "updated_datetime": created,
        "lines": items,
        "addresses": [],
        "payments": [],
    }
