"""Preview: the profile a sync would send next to the live Klaviyo profile, field by field."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

PROFILE_WRITES = ("create_or_update_profile", "update_profile")


@dataclass(frozen=True)
class FieldRow:
    field: str
    would_send: str
    live: str
    differs: bool


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested attributes as dotted names: ``location.city``, ``properties.Tier``."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value} if prefix else {}


def payload_attributes(report: dict[str, Any]) -> dict[str, Any]:
    """The profile attributes the dry run's writes would set, later writes winning."""
    attributes: dict[str, Any] = {}
    for write in report.get("writes", []):
        if write.get("operation") in PROFILE_WRITES:
            data = (write.get("body") or {}).get("data") or {}
            attributes.update(flatten(data.get("attributes") or {}))
    return attributes


def compare(report: dict[str, Any], live: dict[str, Any] | None) -> list[FieldRow]:
    """One row per field the sync would send; ``differs`` when the live value is not it."""
    live_attributes = flatten((live or {}).get("attributes") or {})
    rows = []
    for name, value in sorted(payload_attributes(report).items()):
        current = live_attributes.get(name)
        rows.append(FieldRow(name, _show(value), _show(current) if name in live_attributes
                             else "(not set)", not _same(value, current)))
    return rows


def other_writes(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The dry run's writes besides the profile's (lists, subscriptions, link write-back)."""
    return [w for w in report.get("writes", []) if w.get("operation") not in PROFILE_WRITES]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float):
        return float(a) == float(b)
    return bool(a == b or (a in (None, "") and b in (None, "")))


def _show(value: Any) -> str:
    if value is None:
        return "(empty)"
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)
