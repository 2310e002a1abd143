"""Masking personal data and secrets in free text: log lines and error reports.

The rest of the service already keeps values out of messages; this is the safety net for what
slips through (a library's exception text, a request echoed by a dependency). It masks email
addresses, phone-number-like digit runs and API keys, and leaves ids readable: a digit run
labelled as an id (``customer_id=1234567``, ``"profile_id": "…"``, a value whose key ends in
``id``) is an id, not a phone number, and dates, decimals and IP addresses are not phones.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

EMAIL_MASK = "[email]"
PHONE_MASK = "[phone]"
KEY_MASK = "[key]"

_EMAIL = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
)
# "Klaviyo-API-Key pk_…", "Bearer …", and a bare Klaviyo private key anywhere.
_AUTH_VALUE = re.compile(r"\b(Klaviyo-API-Key|Bearer|Basic|Token)(\s+)[^\s\"',;]+", re.IGNORECASE)
_PRIVATE_KEY = re.compile(r"\bpk_[A-Za-z0-9]{6,}")
# Optional +, then digits with single separators (space, dash, dot, parentheses), 7+ digits
# in all; not glued to a word, so UUID segments and hex ids stay intact.
_PHONE = re.compile(r"(?<![\w+-])\+?\(?\d(?:[\s.\-()]{0,2}\d){6,}\)?(?![\w-])")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DECIMAL = re.compile(r"\d+\.\d+")
_IPV4 = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
# The text just before a digit run that says the run is an id.
_ID_LABEL = re.compile(
    r"(?:\bid|_id|guid|ids|customer|customers|profile|enqueued)[\"']?\s*[:=]?\s*[\"'\[(]{0,2}\s*$",
    re.IGNORECASE,
)
# An earlier item of the same list: ``"ids": ["1234567", "2345678"]`` labels both runs.
_LIST_ITEM_BEFORE = re.compile(r"[\"']?[\w-]+[\"']?\s*,\s*[\"']?$")
_LABEL_WINDOW = 256
_MAX_LIST_ITEMS = 50
_MAX_DEPTH = 40


def _is_phone(match: re.Match[str], text: str) -> bool:
    run = match.group(0)
    if _DATE.match(run) or _DECIMAL.fullmatch(run) or _IPV4.fullmatch(run):
        return False
    before = text[max(0, match.start() - _LABEL_WINDOW):match.start()]
    for _ in range(_MAX_LIST_ITEMS):
        if _ID_LABEL.search(before):
            return False
        item = _LIST_ITEM_BEFORE.search(before)
        if item is None:
            return True
        before = before[:item.start()]
    return True


def mask_phones(text: str) -> str:
    return _PHONE.sub(lambda m: PHONE_MASK if _is_phone(m, text) else m.group(0), text)


def mask_emails(text: str) -> str:
    return _EMAIL.sub(EMAIL_MASK, text)


def mask_keys(text: str) -> str:
    text = _AUTH_VALUE.sub(lambda m: f"{m.group(1)}{m.group(2)}{KEY_MASK}", text)
    return _PRIVATE_KEY.sub(KEY_MASK, text)


def scrub_text(text: str, *, phones: bool = True) -> str:
    """``text`` with keys, emails and (unless ``phones`` is False) phone numbers masked."""
    if not text:
        return text
    text = mask_keys(text)
    if "@" in text:
        text = mask_emails(text)
    return mask_phones(text) if phones else text


def is_id_key(key: object) -> bool:
    """A mapping key whose value is an id (``customer_id``, ``tracking_guid``, ``ids``)."""
    name = str(key).lower()
    return name in ("id", "ids") or name.endswith(("_id", "_ids", "guid", "id_"))


def scrub(value: Any, *, key: object = None, _depth: int = 0) -> Any:
    """A copy of ``value`` with every string inside it scrubbed: mappings, lists and tuples
    are walked; keys are kept (they are field names); other values pass unchanged."""
    if _depth > _MAX_DEPTH:
        return value
    if isinstance(value, str):
        return scrub_text(value, phones=not is_id_key(key))
    if isinstance(value, bytes | bytearray):
        return scrub_text(bytes(value).decode("utf-8", "replace"), phones=not is_id_key(key))
    if isinstance(value, Mapping):
        return {k: scrub(v, key=k, _depth=_depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [scrub(v, key=key, _depth=_depth + 1) for v in value]
        return items if isinstance(value, list) else type(value)(items)
    return value
