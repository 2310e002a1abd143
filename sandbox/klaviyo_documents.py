"""JSON:API documents the sandbox answers with: profile and list resources, request body
envelopes, and cursor paging whose ``links.next`` is a full URL, as Klaviyo's is.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

from sandbox.httpserver import Request
from sandbox.klaviyo_errors import invalid

PROFILE_SPARSE_FIELDS = frozenset({
    "email", "phone_number", "external_id", "first_name", "last_name", "organization",
    "locale", "title", "image", "created", "updated", "last_event_date", "location",
    "properties", "subscriptions",
})


def body_data(request: Request, expected_type: str | None, *, many: bool = False) -> Any:
    """``data`` of a JSON:API request body, checked for shape and ``type``."""
    try:
        document = json.loads(request.body) if request.body else None
    except (ValueError, UnicodeDecodeError):
        raise invalid("JSON parse error", pointer="/data") from None
    if not isinstance(document, dict) or "data" not in document:
        raise invalid("'data' is a required property", pointer="/data")
    data = document["data"]
    items = data if many else [data]
    if many and not isinstance(data, list):
        raise invalid("'data' must be an array.", pointer="/data")
    for index, item in enumerate(items):
        where = f"/data/{index}" if many else "/data"
        if not isinstance(item, dict):
            raise invalid("Resource objects must be objects.", pointer=where)
        if expected_type is not None and item.get("type") != expected_type:
            raise invalid(f"'type' must be '{expected_type}'.", pointer=f"{where}/type")
    return data


def profile_resource(record: dict[str, Any], base_url: str, request: Request) -> dict[str, Any]:
    attributes = {k: v for k, v in record["attributes"].items()}
    attributes["last_event_date"] = None
    extra = request.query.get("additional-fields[profile]", "").split(",")
    if "subscriptions" in extra:
        attributes["subscriptions"] = record["subscriptions"]
    wanted = request.query.get("fields[profile]")
    if wanted:
        names = set(wanted.split(","))
        attributes = {k: v for k, v in attributes.items() if k in names}
    self_url = f"{base_url}/api/profiles/{record['id']}"
    return {
        "type": "profile", "id": record["id"], "attributes": attributes,
        "relationships": {
            name: {"links": {"self": f"{self_url}/relationships/{name}",
                             "related": f"{self_url}/{name}"}}
            for name in ("lists", "segments")
        },
        "links": {"self": self_url},
    }


def list_resource(record: dict[str, Any], base_url: str) -> dict[str, Any]:
    attributes = {k: record[k] for k in ("name", "created", "updated", "opt_in_process")}
    return {"type": "list", "id": record["id"], "attributes": attributes,
            "links": {"self": f"{base_url}/api/lists/{record['id']}"}}


def single(resource: dict[str, Any]) -> dict[str, Any]:
    return {"data": resource, "links": {"self": resource["links"]["self"]}}


def page_size(request: Request, default: int, maximum: int) -> int:
    raw = request.query.get("page[size]")
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= maximum:
        raise invalid(f"Page size must be an integer between 1 and {maximum}.",
                      parameter="page[size]")
    return int(raw)


def paged(items: Sequence[Any], request: Request, base_url: str, size: int
          ) -> tuple[Sequence[Any], dict[str, Any]]:
    """The page of ``items`` the request's cursor points at, and the collection ``links``."""
    start = _decode_cursor(request.query.get("page[cursor]"))
    page = items[start:start + size]
    links: dict[str, Any] = {"self": _url(base_url, request, None), "next": None, "prev": None}
    if start + size < len(items):
        links["next"] = _url(base_url, request, start + size)
    if start > 0:
        links["prev"] = _url(base_url, request, max(0, start - size))
    return page, links


def _decode_cursor(cursor: str | None) -> int:
    if cursor is None:
        return 0
    try:
        kind, _, offset = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
        if kind == "offset" and offset.isdigit():
            return int(offset)
    except ValueError:
        pass
    raise invalid("Invalid page cursor.", parameter="page[cursor]")


def _url(base_url: str, request: Request, offset: int | None) -> str:
    query = {k: v for k, v in request.query.items() if k != "page[cursor]"}
    if offset is not None:
        query["page[cursor]"] = base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()
    encoded = urlencode(query)
    return f"{base_url}{request.path}" + (f"?{encoded}" if encoded else "")
