"""iPaaS.com field names: the PascalCase names mappings use, and the JSON keys they read.

The customer API answers in snake_case (``email_address``) while iPaaS.com's mapping
collections and formulas name fields in PascalCase (``EmailAddress``). Mapping files use the
PascalCase names so they read like iPaaS.com's own; these tables are the translation and the
list of names a mapping file may mention.
"""

from __future__ import annotations

import re

CUSTOMER_FIELDS: dict[str, str] = {
    "Id": "id",
    "TrackingGuid": "tracking_guid",
    "CustomerNumber": "customer_number",
    "FirstName": "first_name",
    "LastName": "last_name",
    "EmailAddress": "email_address",
    "Company": "company",
    "Comment": "comment",
    "CategoryId": "category_id",
    "CreatedDateTime": "created_datetime",
    "UpdatedDateTime": "updated_datetime",
    "UpdateDateTime": "updated_datetime",  # the C# model's spelling of the same field
    "CustomFields": "custom_fields",
    "ExternalIds": "external_ids",
    "Addresses": "addresses",
}

ADDRESS_FIELDS: dict[str, str] = {
    "Id": "id",
    "FirstName": "first_name",
    "LastName": "last_name",
    "Company": "company",
    "PhoneNumber": "phone_number",
    "Address1": "address_1",
    "Address2": "address_2",
    "Address3": "address_3",
    "City": "city",
    "Region": "region",
    "Country": "country",
    "PostalCode": "postal_code",
    "IsPrimaryBilling": "is_primary_billing",
    "IsPrimaryShipping": "is_primary_shipping",
    "CustomerId": "customer_id",
}

CUSTOM_FIELD_FIELDS: dict[str, str] = {
    "Id": "id",
    "CustomFieldName": "custom_field_name",
    "Value": "value",
}

EXTERNAL_ID_FIELDS: dict[str, str] = {
    "Id": "id",
    "SystemId": "system_id",
    "SystemName": "system_name",
    "ExternalId": "external_id",
    "InternalId": "internal_id",
    "Message": "message",
}

# The customer fields that hold lists, and the fields of their items.
LIST_ITEM_FIELDS: dict[str, dict[str, str]] = {
    "Addresses": ADDRESS_FIELDS,
    "CustomFields": CUSTOM_FIELD_FIELDS,
    "ExternalIds": EXTERNAL_ID_FIELDS,
}
ANY_ITEM_FIELDS: dict[str, str] = {
    name: key for fields in LIST_ITEM_FIELDS.values() for name, key in fields.items()
}

_WORD_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def json_key(name: str) -> str:
    """The JSON key for a PascalCase field name (``Address1`` → ``address_1``)."""
    known = ANY_ITEM_FIELDS.get(name) or CUSTOMER_FIELDS.get(name)
    if known is not None:
        return known
    return _WORD_BOUNDARY.sub("_", name).lower()


def is_true(value: object) -> bool:
    """iPaaS.com booleans arrive as JSON booleans or as strings such as ``"True"``."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return False
