"""iPaaS.com webhook bodies → the syncs they ask for. Pure: no I/O, no Celery, no Redis.

Accepted shapes (reference/ipaas.md §1.2, §1.6): the envelope ``{"id", "attempt",
"notifications": [...]}``, a bare notification object, and a bare list of notifications.
Keys are matched without regard to case, ``_`` or ``-``, so ``Notifications``, ``TrackingGuid``,
``External_Id`` and ``externalId`` all work.

The customer id is ``id`` and, when that is absent or empty, ``external_id``. Hooks *from*
iPaaS.com carry the iPaaS.com record id in ``id``; ``external_id`` is what inbound-style hooks
and hand-made test calls fill in. Both name the record the worker fetches from iPaaS.com, so
a wrong id there ends as ``customer_not_found`` in the dead-letter store, never silently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

CUSTOMER = "customer"
TRANSACTION = "transaction"

# Normalised scope → the kind of record to sync. The one place new scopes are routed.
# Transactions are synced only while GENERATE_EVENTS is on; the intake drops them otherwise.
ROUTES: dict[str, str] = {
    "customer/created": CUSTOMER,
    "customer/updated": CUSTOMER,
    "transaction/created": TRANSACTION,
    "transaction/updated": TRANSACTION,
}

DEBUG_SUFFIX = "/debug"
MAX_ID_LENGTH = 128
MAX_GUID_LENGTH = 128

_NOTIFICATION_KEYS = {"action", "id", "externalid", "destination", "scope", "type", "trackingguid"}


class MalformedBody(ValueError):
    """The body as a whole is unusable (not JSON, or not a notification shape): answer 400."""


@dataclass(frozen=True)
class SyncRequest:
    """One notification that asks for a sync: what kind of record, which one, and the
    correlation id that follows it into the worker's logs."""

    index: int
    kind: str
    record_id: str
    tracking_guid: str | None


@dataclass(frozen=True)
class Rejection:
    index: int
    error: str

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "error": self.error}


@dataclass
class ParsedWebhook:
    envelope_id: str | None = None
    requests: list[SyncRequest] = field(default_factory=list)
    ignored: int = 0
    rejected: list[Rejection] = field(default_factory=list)


def normalise_key(key: str) -> str:
    return key.replace("_", "").replace("-", "").lower()


def normalise_scope(scope: str) -> str:
    """``Customer/Updated/DEBUG`` → ``customer/updated``."""
    value = scope.strip().lower()
    if value.endswith(DEBUG_SUFFIX):
        value = value[: -len(DEBUG_SUFFIX)]
    return value.strip("/")


def route(scope: str) -> str | None:
    """The kind of record a scope syncs, or None when the scope is not ours."""
    return ROUTES.get(normalise_scope(scope))


def decode_json(raw: bytes) -> Any:
    if not raw.strip():
        raise MalformedBody("empty body: expected a JSON webhook")
    try:
        return json.loads(raw)
    except UnicodeDecodeError:
        raise MalformedBody("body is not UTF-8 JSON") from None
    except json.JSONDecodeError as exc:
        # Position only: the message must not echo the body.
        raise MalformedBody(
            f"body is not valid JSON (line {exc.lineno}, column {exc.colno})"
        ) from None


def parse_body(raw: bytes, correlation_id: str | None = None) -> ParsedWebhook:
    return parse_payload(decode_json(raw), correlation_id)


def parse_payload(payload: Any, correlation_id: str | None = None) -> ParsedWebhook:
    """Sort every notification into a sync request, ignored, or rejected (with its index).

    ``correlation_id`` (the ``x-correlation-id`` header) stands in for a notification's
    missing ``tracking_guid``. Raises MalformedBody when the payload has no usable shape.
    """
    fallback_guid = _guid(correlation_id)
    envelope_id: str | None = None
    if isinstance(payload, list):
        items: list[Any] = payload
    elif isinstance(payload, dict):
        keys = _normalised(payload)
        if "notifications" in keys:
            items = keys["notifications"]
            if not isinstance(items, list):
                raise MalformedBody("'notifications' must be a list")
            envelope_id = _text(keys.get("id"), MAX_ID_LENGTH)
        elif _NOTIFICATION_KEYS & keys.keys():
            items = [payload]
        else:
            raise MalformedBody(
                "expected an envelope with 'notifications', a notification or a list of them"
            )
    else:
        raise MalformedBody(
            "expected an envelope with 'notifications', a notification or a list of them"
        )
    parsed = ParsedWebhook(envelope_id=envelope_id)
    for index, item in enumerate(items):
        _sort(parsed, index, item, fallback_guid)
    return parsed


def _sort(parsed: ParsedWebhook, index: int, item: Any, fallback_guid: str | None) -> None:
    if not isinstance(item, dict):
        parsed.rejected.append(Rejection(index, "notification is not an object"))
        return
    keys = _normalised(item)
    scope = keys.get("scope")
    if not isinstance(scope, str) or not scope.strip():
        parsed.rejected.append(Rejection(index, "missing scope"))
        return
    kind = route(scope)
    if kind is None:
        parsed.ignored += 1
        return
    record_id, problem = _record_id(keys)
    if record_id is None:
        parsed.rejected.append(Rejection(index, problem))
        return
    guid = _guid(keys.get("trackingguid")) or fallback_guid
    parsed.requests.append(SyncRequest(index, kind, record_id, guid))


def _record_id(keys: dict[str, Any]) -> tuple[str | None, str]:
    problem = "missing id"
    for name in ("id", "externalid"):
        value = keys.get(name)
        if value is None:
            continue
        text = _id_text(value)
        if text is None:
            problem = "invalid id: must be a string or a number"
        elif len(text) > MAX_ID_LENGTH:
            problem = f"invalid id: longer than {MAX_ID_LENGTH} characters"
        elif text:
            return text, ""
    return None, problem


def _id_text(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else None
    if isinstance(value, str):
        return value.strip()
    return None


def _guid(value: Any) -> str | None:
    return _text(value, MAX_GUID_LENGTH)


def _text(value: Any, limit: int) -> str | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value[:limit] or None


def _normalised(obj: dict[Any, Any]) -> dict[str, Any]:
    """Keys folded to one spelling; an exact snake_case key wins over a variant of it."""
    out: dict[str, Any] = {}
    exact: set[str] = set()
    for key, value in obj.items():
        if not isinstance(key, str):
            continue
        folded = normalise_key(key)
        is_exact = key == key.lower()
        if folded not in out or (is_exact and folded not in exact):
            out[folded] = value
            if is_exact:
                exact.add(folded)
    return out
