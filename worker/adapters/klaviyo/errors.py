"""Reading Klaviyo's JSON:API error bodies without trusting their shape or repeating them.

Only an error's ``code``, ``title`` and the *name* of the field it points at are kept:
``detail`` can quote the rejected value (an email, a phone number), so it is never used.
"""

from __future__ import annotations

from typing import Any

import requests

from worker.core import reasons
from worker.core.errors import FieldError

DUPLICATE_PROFILE_CODE = "duplicate_profile"
_MAX_TEXT = 120  # titles are short; a long one is not a title and may carry data


def error_objects(response: requests.Response) -> list[dict[str, Any]]:
    """The ``errors`` array of a response, or ``[]`` for anything that is not one."""
    try:
        body = response.json()
    except ValueError:
        return []
    if not isinstance(body, dict):
        return []
    errors = body.get("errors")
    if not isinstance(errors, list):
        return []
    return [error for error in errors if isinstance(error, dict)]


def field_errors(errors: list[dict[str, Any]]) -> list[FieldError]:
    """One ``FieldError`` per Klaviyo error object, named by the field it points at."""
    return [
        FieldError(field=_field_name(error), reason=reasons.KLAVIYO_REJECTED,
                   message=_message(error))
        for error in errors
    ]


def error_codes(errors: list[dict[str, Any]]) -> set[str]:
    return {str(error.get("code")) for error in errors if isinstance(error.get("code"), str)}


def request_ids(errors: list[dict[str, Any]]) -> list[str]:
    """Klaviyo's ids for the failed request: safe to log, and what its support asks for."""
    return [str(error["id"]) for error in errors if isinstance(error.get("id"), str)]


def duplicate_profile_id(errors: list[dict[str, Any]]) -> str | None:
    """``meta.duplicate_profile_id`` of the first duplicate_profile error; Klaviyo sometimes
    leaves it out, so ``None`` is an expected answer."""
    for error in errors:
        if error.get("code") != DUPLICATE_PROFILE_CODE:
            continue
        meta = error.get("meta")
        if isinstance(meta, dict):
            found = meta.get("duplicate_profile_id")
            if isinstance(found, str) and found:
                return found
    return None


def _field_name(error: dict[str, Any]) -> str:
    source = error.get("source")
    if not isinstance(source, dict):
        return "request"
    pointer = source.get("pointer")
    if isinstance(pointer, str):
        segments = [s for s in pointer.split("/") if s]
        if segments:
            # RFC 6901 escapes, undone in the order the RFC prescribes.
            return segments[-1].replace("~1", "/").replace("~0", "~")[:_MAX_TEXT]
    parameter = source.get("parameter")
    if isinstance(parameter, str) and parameter:
        return parameter[:_MAX_TEXT]
    return "request"


def _message(error: dict[str, Any]) -> str:
    code = error.get("code") if isinstance(error.get("code"), str) else "error"
    title = error.get("title") if isinstance(error.get("title"), str) else ""
    text = f"{code}: {title}" if title else str(code)
    return text[:_MAX_TEXT]
