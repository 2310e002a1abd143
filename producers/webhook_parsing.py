"""iPaaS.com webhook bodies → the syncs they ask for. Pure: no I/O, no Celery, no Redis.

Accepted shapes (reference/ipaas.md §1.2, §1.6): the envelope ``{"id", "attempt",
"notifications": [...]}``, a bare notification object, and a bare list of notifications.
Keys are matched without regard to case, ``_`` or ``-``, so ``Notifications``, ``TrackingGuid``,
``External_Id`` and ``externalId`` all work.

The customer id is ``id`` and, when that is absent or empty, ``external_id``. Hooks *from*
iPaaS.com carry the iPaaS.com record id in ``id``; ``external_id`` is what inbound-style hooks
and hand-made test calls fill in. Both name the record the worker fetches from iPaaS.com, so
a wrong id there ends as ``customer_not_found`` in the dead-letter store, never silently.

Any body up to the receiver's limit parses in linear time and memory: nesting is measured
before ``json.loads`` recurses into it, and numbers too long for an id are never converted
(Python refuses, or takes quadratic time over, integers of thousands of digits).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

# The kinds of record a notification asks for (a deleted customer: its erasure), as the
# intake queues them (worker/adapters/pending.py).
from worker.adapters.pending import CUSTOMER, CUSTOMER_DELETED, TRANSACTION

# Normalised scope → the kind of record to sync. The one place new scopes are routed.
# Transactions are synced only while GENERATE_EVENTS is on; the intake drops them otherwise.
ROUTES: dict[str, str] = {
    "customer/created": CUSTOMER,
    "customer/updated": CUSTOMER,
    "customer/deleted": CUSTOMER_DELETED,
    "transaction/created": TRANSACTION,
    "transaction/updated": TRANSACTION,
}

DEBUG_SUFFIX = "/debug"
# A customer id longer than this is no id of iPaaS.com's or of any system it links.
MAX_ID_LENGTH = 64
MAX_ENVELOPE_ID_LENGTH = 128
MAX_GUID_LENGTH = 128
# A webhook is three levels deep (envelope, list, notification); the margin is for extra
# fields. The limit keeps json.loads far from Python's recursion limit.
MAX_NESTING = 32
# Digits of a JSON number worth converting: anything longer cannot be an id.
_MAX_NUMBER_CHARS = MAX_ID_LENGTH + 1

# Control characters (C0, DEL, C1), the Unicode line separators (they split log lines) and
# surrogates: json.loads joins a valid escaped pair into one character, so any surrogate left
# is unpaired, and Redis (UTF-8) cannot store it.
_UNUSABLE_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
# A JSON string, its closing quote optional so that an unterminated one is consumed in one
# pass instead of being retried from every later quote (which would be quadratic).
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_BRACKET_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
# Trimmed from around an id. Not str.strip()'s whole set: that includes control characters
# (U+001C-U+001F, U+0085), which must get an id rejected, not silently removed.
_SURROUNDING_SPACE = " \t\r\n"

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


class OversizedNumber:
    """Stands for a JSON number too long to be an id; it is never converted."""

    def __repr__(self) -> str:
        return "OversizedNumber()"


OVERSIZED_NUMBER = OversizedNumber()


def _bounded_int(text: str) -> int | OversizedNumber:
    return int(text) if len(text) <= _MAX_NUMBER_CHARS else OVERSIZED_NUMBER


def _bounded_float(text: str) -> float | OversizedNumber:
    return float(text) if len(text) <= _MAX_NUMBER_CHARS else OVERSIZED_NUMBER


def nesting_depth(text: str) -> int:
    """How deep brackets nest outside JSON strings; linear time, no recursion.

    Exact for valid JSON. For invalid JSON it is at least the depth json.loads reaches
    before it stops at the first error, which is all the guard needs.
    """
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    return max(accumulate(map(_BRACKET_STEP.__getitem__, brackets), initial=0))


def decode_json(raw: bytes) -> Any:
    if not raw.strip():
        raise MalformedBody("empty body: expected a JSON webhook")
    try:
        text = raw.decode("utf-8-sig")  # strict: encoded surrogates are not UTF-8 either
    except UnicodeDecodeError:
        raise MalformedBody("body is not UTF-8 JSON") from None
    too_deep = MalformedBody(f"body is nested deeper than {MAX_NESTING} levels")
    if nesting_depth(text) > MAX_NESTING:
        raise too_deep
    try:
        return json.loads(text, parse_int=_bounded_int, parse_float=_bounded_float)
    except RecursionError:  # cannot happen under the depth check; never a 500 if it did
        raise too_deep from None
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
            envelope_id = _text(keys.get("id"), MAX_ENVELOPE_ID_LENGTH)
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
    """The customer id (``id``, else ``external_id``), or None and why there is none."""
    problem = "missing id"
    for name in ("id", "externalid"):
        value = keys.get(name)
        if value is None:
            continue
        text, problem_here = customer_id(value)
        if text is not None:
            return text, ""
        problem = problem_here or problem
    return None, problem


def customer_id(value: Any) -> tuple[str | None, str]:
    """A notification's id as a customer id, or None and the reason (empty: no id at all).

    A string (spaces, tabs and line breaks around it trimmed) or an integer-valued number;
    at most MAX_ID_LENGTH characters, none of them a control or unpaired surrogate.
    """
    too_long = f"invalid id: longer than {MAX_ID_LENGTH} characters"
    if isinstance(value, OversizedNumber):
        return None, too_long
    if isinstance(value, float) and value.is_integer():  # inf and nan are not
        value = int(value)  # a float has at most 309 digits: cheap to convert
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None, "invalid id: must be a string or a number"
    if isinstance(value, int):
        # Compared before str(): converting a huge integer is what must not happen.
        if abs(value) >= 10**MAX_ID_LENGTH:
            return None, too_long
        value = str(value)
    text = value.strip(_SURROUNDING_SPACE)
    if not text:
        return None, ""
    if len(text) > MAX_ID_LENGTH:
        return None, too_long
    if _UNUSABLE_CHARACTERS.search(text):
        return None, "invalid id: contains control or unpaired surrogate characters"
    return text, ""


def _guid(value: Any) -> str | None:
    return _text(value, MAX_GUID_LENGTH)


def _text(value: Any, limit: int) -> str | None:
    """A short label (tracking guid, envelope id), or None when it cannot be one."""
    if isinstance(value, int) and not isinstance(value, bool):
        if abs(value) >= 10**limit:
            return None
        value = str(value)
    elif isinstance(value, float):
        value = str(value)
    if not isinstance(value, str):
        return None
    value = value.strip(_SURROUNDING_SPACE)[:limit]
    if _UNUSABLE_CHARACTERS.search(value):
        return None
    return value or None


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
