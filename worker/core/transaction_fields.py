"""iPaaS.com transaction field names: PascalCase (as mapping files name them) → JSON keys.

The transactions API answers in snake_case like the customers API; event mappings name
fields the iPaaS.com way. An Ordered Product mapping reads its line's fields, and the
transaction's through ``Parent.`` (``Parent.TransactionNumber``).
"""

from __future__ import annotations

TRANSACTION_FIELDS: dict[str, str] = {
    "Id": "id",
    "TransactionNumber": "transaction_number",
    "CustomerId": "customer_id",
    "EmailAddress": "email_address",
    "Type": "type",
    "Status": "status",
    "DiscountAmount": "discount_amount",
    "TaxAmount": "tax_amount",
    "ShippingAmount": "shipping_amount",
    "Subtotal": "subtotal",
    "Total": "total",
    "TotalQty": "total_qty",
    "CreatedDateTime": "created_datetime",
    "UpdatedDateTime": "updated_datetime",
    "Lines": "lines",
    "Addresses": "addresses",
    "Payments": "payments",
    "CustomFields": "custom_fields",
}

LINE_FIELDS: dict[str, str] = {
    "Id": "id",
    "SequenceNumber": "sequence_number",
    "Sku": "sku",
    "Description": "description",
    "Type": "type",
    "Qty": "qty",
    "UnitPrice": "unit_price",
    "ExtendedPrice": "extended_price",
    "DiscountAmount": "discount_amount",
    "TaxAmount": "tax_amount",
    "CustomFields": "custom_fields",
}

PARENT_PREFIX = "Parent."

# What an Ordered Product mapping may name: the line's fields and the transaction's.
ORDERED_PRODUCT_FIELDS: dict[str, str] = {
    **LINE_FIELDS,
    **{PARENT_PREFIX + name: key for name, key in TRANSACTION_FIELDS.items()},
}
