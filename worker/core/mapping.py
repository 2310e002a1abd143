"""Run a mapping collection over one iPaaS.com customer.

The result is split by where each value goes in Klaviyo (attributes, location, properties,
subscription directives), so later steps never have to re-interpret destination names.
"""

from __future__ import annotations

import json
from typing import Any

from worker.core.formulas import FormulaEnv, evaluate, is_empty, primary_billing_address
from worker.core.mapping_file import (
    Mapping,
    MappingCollections,
    MappingFileError,
    load_mapping,
)
from worker.core.model import (
    ADD,
    ATTRIBUTE_DESTINATIONS,
    ID_DESTINATION,
    LOCATION_DESTINATIONS,
    TYPE_DESTINATION,
    UPDATE,
    MappedCustomer,
    MappingContext,
    is_directive,
)

__all__ = [
    "Mapping",
    "MappingCollections",
    "MappingFileError",
    "load_mapping",
    "map_customer",
    "profile_attributes",
]


def map_customer(
    customer: dict[str, Any], collections: MappingCollections, context: MappingContext
) -> MappedCustomer:
    """Map one customer with the Update collection if it is linked, else the Add one."""
    collection = UPDATE if context.linked_profile_id else ADD
    mapped = MappedCustomer(customer_id=_customer_id(customer), collection=collection)
    env = FormulaEnv(customer, context, mapped.problems)
    for mapping in collections.for_collection(collection):
        value = evaluate(mapping.expression, env)
        if not is_empty(value):
            _route(mapped, mapping.destination, value)
    _apply_custom_fields(mapped, customer.get("custom_fields"))
    mapped.has_primary_billing = primary_billing_address(customer) is not None
    return mapped


def profile_attributes(mapped: MappedCustomer) -> dict[str, Any]:
    """Attributes for Klaviyo's profile import; the address step sends the location."""
    attributes = {k: v for k, v in mapped.attributes.items() if v is not None}
    properties = {k: v for k, v in mapped.properties.items() if v is not None}
    if properties:
        attributes["properties"] = properties
    return attributes


def _customer_id(customer: dict[str, Any]) -> str | None:
    raw = customer.get("id")
    if raw is None or isinstance(raw, bool):
        return None
    return str(raw).strip() or None


def _route(mapped: MappedCustomer, destination: str, value: Any) -> None:
    attribute = ATTRIBUTE_DESTINATIONS.get(destination)
    if attribute is not None:
        if attribute == "email" and isinstance(value, str):
            value = value.strip().lower()
        mapped.attributes[attribute] = value
    elif destination in LOCATION_DESTINATIONS:
        mapped.location[LOCATION_DESTINATIONS[destination]] = value
    elif destination == ID_DESTINATION:
        mapped.profile_id = str(value)
    elif destination == TYPE_DESTINATION:
        mapped.resource_type = str(value)
    elif is_directive(destination):
        mapped.directives[destination] = value
    else:
        mapped.properties[destination] = value


def _apply_custom_fields(mapped: MappedCustomer, custom_fields: object) -> None:
    # The customer's own values come last so they override static mappings of the same name.
    if not isinstance(custom_fields, list):
        return
    for item in custom_fields:
        if not isinstance(item, dict):
            continue
        name = str(item.get("custom_field_name") or "").strip()
        value = item.get("value")
        if not name or is_empty(value):
            continue
        if is_directive(name):
            mapped.directives[name] = value  # parsed as a flag by the subscription step
        else:
            mapped.properties[name] = _as_text(value)


def _as_text(value: object) -> str:
    """iPaaS.com stores custom field values as text, so they reach Klaviyo as text (unlike
    typed static values) even when an API answer happens to carry a JSON number or boolean."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)
