"""Profile attribute rules shared by create, update and upsert: which names exist, syntax of
email and phone, and the "null clears, omitted keeps, properties and location merge" update.
"""

from __future__ import annotations

import re
from typing import Any

from sandbox.klaviyo_errors import invalid
from sandbox.klaviyo_state import IDENTIFIERS, LOCATION_FIELDS, SCALAR_FIELDS, now_iso

PROFILE_ATTRIBUTES = frozenset((*SCALAR_FIELDS, "location", "properties"))
UPSERT_ATTRIBUTES = PROFILE_ATTRIBUTES | {"_kx"}

EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
E164_PATTERN = re.compile(r"^\+[1-9]\d{6,14}$")
INVALID_EMAIL = "Invalid email address"
INVALID_PHONE = "Invalid phone number format (Example of a valid format: +12345678901)"
ATTRIBUTES = "/data/attributes"


def check_email(value: Any, pointer: str) -> None:
    if not isinstance(value, str) or not EMAIL_PATTERN.match(value):
        raise invalid(INVALID_EMAIL, pointer=pointer)


def check_phone(value: Any, pointer: str) -> None:
    if not isinstance(value, str) or not E164_PATTERN.match(value):
        raise invalid(INVALID_PHONE, pointer=pointer)


def unknown_field(name: str, pointer: str) -> Exception:
    return invalid(f"'{name}' is not a valid field for the resource 'profile'.", pointer=pointer)


def validate_attributes(attributes: Any, allowed: frozenset[str]) -> dict[str, Any]:
    if not isinstance(attributes, dict):
        raise invalid("'attributes' must be an object.", pointer=ATTRIBUTES)
    for name, value in attributes.items():
        pointer = f"{ATTRIBUTES}/{name}"
        if name not in allowed:
            raise unknown_field(name, pointer)
        if value is None:
            continue
        if name == "location":
            _validate_location(value, pointer)
        elif name == "properties":
            if not isinstance(value, dict):
                raise invalid("'properties' must be an object.", pointer=pointer)
        elif not isinstance(value, str):
            raise invalid(f"'{name}' must be a string.", pointer=pointer)
        elif name == "email":
            check_email(value, pointer)
        elif name == "phone_number":
            check_phone(value, pointer)
    return attributes


def _validate_location(location: Any, pointer: str) -> None:
    if not isinstance(location, dict):
        raise invalid("'location' must be an object.", pointer=pointer)
    for name, value in location.items():
        if name not in LOCATION_FIELDS:
            raise invalid(f"'{name}' is not a valid field for 'location'.",
                          pointer=f"{pointer}/{name}")
        allowed_types: tuple[type, ...] = (str, int, float) if name in (
            "latitude", "longitude") else (str,)
        if value is not None and (isinstance(value, bool) or not isinstance(value, allowed_types)):
            raise invalid(f"'{name}' has the wrong type.", pointer=f"{pointer}/{name}")


def sent_identifiers(attributes: dict[str, Any]) -> dict[str, Any]:
    return {k: attributes[k] for k in IDENTIFIERS if attributes.get(k) not in (None, "")}


def require_identifier(attributes: dict[str, Any]) -> None:
    if not sent_identifiers(attributes):
        raise invalid("One or more identifiers is required", pointer=ATTRIBUTES)


def merged(stored: dict[str, Any], changes: dict[str, Any], meta: Any) -> dict[str, Any]:
    """The attributes after applying ``changes`` (and ``meta.patch_properties``) to ``stored``."""
    result = {**stored, "location": dict(stored["location"]),
              "properties": dict(stored["properties"])}
    for name, value in changes.items():
        if name == "_kx":
            continue  # web-tracking id: accepted, not modelled
        if name == "location":
            result["location"] = (dict.fromkeys(LOCATION_FIELDS) if value is None
                                  else {**result["location"], **value})
        elif name == "properties":
            result["properties"] = {} if value is None else {**result["properties"], **value}
        else:
            result[name] = value
    _apply_patch_properties(result["properties"], meta)
    result["updated"] = now_iso()
    return result


def validate_meta(meta: Any) -> None:
    if meta is None:
        return
    if not isinstance(meta, dict):
        raise invalid("'meta' must be an object.", pointer="/data/meta")
    patch = meta.get("patch_properties")
    if patch is None:
        return
    if not isinstance(patch, dict):
        raise invalid("'patch_properties' must be an object.",
                      pointer="/data/meta/patch_properties")
    unset = patch.get("unset")
    if unset is not None and not (isinstance(unset, str) or (
            isinstance(unset, list) and all(isinstance(k, str) for k in unset))):
        raise invalid("Unset must be a string or an array of strings",
                      pointer="/data/meta/patch_properties/unset")
    for operation in ("append", "unappend"):
        if patch.get(operation) is not None and not isinstance(patch[operation], dict):
            raise invalid(f"'{operation}' must be an object.",
                          pointer=f"/data/meta/patch_properties/{operation}")


def _apply_patch_properties(properties: dict[str, Any], meta: Any) -> None:
    patch = (meta or {}).get("patch_properties") or {}
    for key, value in (patch.get("append") or {}).items():
        current = properties.get(key)
        items = list(current) if isinstance(current, list) else ([] if current is None
                                                                  else [current])
        items.extend(value if isinstance(value, list) else [value])
        properties[key] = items
    for key, value in (patch.get("unappend") or {}).items():
        if isinstance(properties.get(key), list):
            drop = value if isinstance(value, list) else [value]
            properties[key] = [item for item in properties[key] if item not in drop]
    unset = patch.get("unset")
    for key in [unset] if isinstance(unset, str) else (unset or []):
        properties.pop(key, None)
