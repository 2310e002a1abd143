"""Reading Klaviyo's JSON:API response documents tolerantly: a missing or odd member is
treated as absent, never as a crash."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests


@dataclass(frozen=True)
class KlaviyoList:
    id: str
    name: str
    opt_in_process: str | None


def json_object(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def data_items(response: requests.Response) -> list[dict[str, Any]]:
    data = json_object(response).get("data")
    return [item for item in data if isinstance(item, dict)] if isinstance(data, list) else []


def to_list(resource: Any) -> KlaviyoList | None:
    if not isinstance(resource, dict) or not isinstance(resource.get("id"), str):
        return None
    attributes = resource.get("attributes")
    attributes = attributes if isinstance(attributes, dict) else {}
    name = attributes.get("name")
    opt_in = attributes.get("opt_in_process")
    return KlaviyoList(id=resource["id"], name=name if isinstance(name, str) else "",
                       opt_in_process=opt_in if isinstance(opt_in, str) else None)


def next_link(response: requests.Response) -> tuple[str, dict[str, Any]] | None:
    links = json_object(response).get("links")
    next_url = links.get("next") if isinstance(links, dict) else None
    if not isinstance(next_url, str) or not next_url:
        return None
    parts = urlsplit(next_url)
    return parts.path, dict(parse_qsl(parts.query, keep_blank_values=True))
