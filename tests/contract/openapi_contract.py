"""Checks requests recorded by the Klaviyo sandbox against Klaviyo's OpenAPI spec.

openapi-core validates the operation (method and path), query and header parameters, the
security scheme and the JSON body against the operation's request schema. It is lenient in
places where the real API is not, so ``violations`` adds its own checks, each marked below:

* a path must match a spec path exactly (openapi-core also accepts a trailing slash, which
  Klaviyo dropped in revision 2024-10-15);
* required headers must really be sent (openapi-core substitutes the schema ``default`` of a
  missing ``revision`` header instead of reporting it);
* ``Authorization`` must use the ``Klaviyo-API-Key`` scheme (the spec models it as a plain
  API-key header, so any value passes);
* no query parameter the operation does not declare;
* ``filter`` must be well formed and use only the fields and operators the operation's
  ``x-klaviyo-filters`` allows (the spec types it as a bare string);
* no body member the schema does not name (the spec leaves ``additionalProperties`` open,
  but Klaviyo answers 400 "'x' is not a valid field"). Members under ``oneOf``/``anyOf`` are
  not checked for this.

``filter`` datetimes must be unquoted ISO 8601 with a zone. What is still not checked:
filter value types beyond quoting and datetimes, the response side, and the
409/429 behaviour the spec does not document.

Messages name the method, path, parameter and JSON pointer, never a header or body value.
"""

from __future__ import annotations

import functools
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from werkzeug.datastructures import Headers, ImmutableMultiDict

from sandbox.httpserver import Request

SPEC_PATH = Path(__file__).with_name("openapi-stable.json")
HOST_URL = "https://a.klaviyo.com"
_load_stats: dict[str, float] = {"loads": 0, "seconds": 0.0}


@functools.cache
def _spec_document() -> dict[str, Any]:
    started = time.perf_counter()
    document: dict[str, Any] = json.loads(SPEC_PATH.read_text(encoding="utf-8"))
    _load_stats["loads"] += 1
    _load_stats["seconds"] += time.perf_counter() - started
    return document


@functools.cache
def klaviyo_spec() -> OpenAPI:
    """The spec as an openapi-core app, built once per process.

    The spec itself is not re-validated (``spec_validator_cls=None``): it is Klaviyo's
    published file, unmodified, and validating 3 MB of it would cost seconds per session.
    """
    started = time.perf_counter()
    app = OpenAPI.from_dict(_spec_document(), config=Config(spec_validator_cls=None))
    _load_stats["seconds"] += time.perf_counter() - started
    return app


def load_stats() -> dict[str, float]:
    """How many times the spec file was read and the seconds spent loading it."""
    return dict(_load_stats)


SANDBOX_ADMIN_PREFIX = "/_sandbox/"  # the sandbox's own admin hooks, not Klaviyo's API


def violations(requests: list[Request]) -> list[str]:
    problems: list[str] = []
    for request in requests:
        if request.path.startswith(SANDBOX_ADMIN_PREFIX):
            continue
        found = list(_problems(request))
        if found:
            problems.append(f"{request.method} {request.path}: " + "; ".join(found))
    return problems


# -- adapter for openapi-core's Request protocol ---------------------------------------


@dataclass
class _OpenApiRequest:
    path: str
    method: str
    body: bytes | None
    content_type: str
    parameters: RequestParameters = field(default_factory=RequestParameters)
    host_url: str = HOST_URL


def _adapt(request: Request) -> _OpenApiRequest:
    query = ImmutableMultiDict(parse_qsl(request.raw_query, keep_blank_values=True))
    return _OpenApiRequest(
        path=request.path,
        method=request.method.lower(),
        body=request.body or None,
        content_type=request.headers.get("content-type", "").lower() if request.body else "",
        parameters=RequestParameters(query=query, header=Headers(request.headers)),
    )


# -- checks ------------------------------------------------------------------------------


def _problems(request: Request) -> Iterator[str]:
    operation = _operation(request.method, request.path)
    if operation is None:
        yield "no such operation in the spec (path or method unknown)"
        return
    yield from _openapi_core_problems(request)
    yield from _header_problems(request, operation)
    yield from _query_problems(request, operation)
    body_schema = (operation.get("requestBody") or {}).get("content", {}).get(
        "application/vnd.api+json", {}).get("schema")
    if body_schema is not None and request.body:
        try:
            body = json.loads(request.body)
        except ValueError:
            return  # openapi-core has reported it
        for pointer in _unknown_members(body, body_schema, ""):
            yield f"body {pointer or '/'}: member not in the schema"


def _openapi_core_problems(request: Request) -> Iterator[str]:
    for error in klaviyo_spec().iter_request_errors(_adapt(request)):
        cause = error.__cause__
        schema_errors = getattr(cause, "schema_errors", None)
        where = "body" if "Body" in type(error).__name__ else getattr(error, "name", "")
        if schema_errors:
            for schema_error in schema_errors:
                pointer = "".join(f"/{part}" for part in schema_error.absolute_path)
                yield f"{where} {pointer or '/'}: {_describe(schema_error)}".strip()
        elif type(cause).__name__ == "MediaTypeDeserializeError":
            yield "body is not valid JSON"
        elif type(cause).__name__ == "MediaTypeNotFound":
            yield "body content type is not application/vnd.api+json"
        else:
            yield f"{type(error).__name__}: {_first_line(error)}"


def _describe(schema_error: Any) -> str:
    if schema_error.validator in ("required", "additionalProperties"):
        return str(schema_error.message)  # names properties, not values
    expected = json.dumps(schema_error.validator_value, default=str)
    return f"fails '{schema_error.validator}' (expected {expected[:120]})"


def _first_line(error: Exception) -> str:
    return str(error).splitlines()[0][:200]


def _header_problems(request: Request, operation: dict[str, Any]) -> Iterator[str]:
    for parameter in operation.get("parameters", []):
        required = parameter["in"] == "header" and parameter.get("required")
        if required and not request.headers.get(parameter["name"].lower()):
            yield f"missing required header '{parameter['name']}'"
    authorization = request.headers.get("authorization", "")
    if not authorization.startswith("Klaviyo-API-Key "):
        yield "Authorization header does not use the Klaviyo-API-Key scheme"


def _query_problems(request: Request, operation: dict[str, Any]) -> Iterator[str]:
    declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
    for name, value in parse_qsl(request.raw_query, keep_blank_values=True):
        if name not in declared:
            yield f"query parameter '{name}' is not declared for this operation"
        elif name == "filter":
            problem = filter_problem(value, operation.get("x-klaviyo-filters", {}))
            if problem:
                yield f"filter: {problem}"


# -- the filter grammar ------------------------------------------------------------------

_QUOTED = r"""(?:"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')"""
_BARE = r"[A-Za-z0-9_.:+\-]+"
_CONDITION = re.compile(
    rf"\s*(?P<op>[a-z-]+)\(\s*(?P<field>[A-Za-z0-9_.$-]+)\s*,\s*"
    rf"(?P<value>{_QUOTED}|\[\s*{_QUOTED}(?:\s*,\s*{_QUOTED})*\s*\]|{_BARE})\s*\)\s*"
)


def filter_problem(text: str, allowed: dict[str, Any]) -> str | None:
    """Why ``text`` is not a filter the operation accepts, or None."""
    position = 0
    while True:
        match = _CONDITION.match(text, position)
        if not match:
            return "not of the form op(field,value)[,op(field,value)...]"
        rules = allowed.get(match["field"])
        if rules is None:
            return f"field '{match['field']}' cannot be filtered on"
        value = match["value"]
        kind = "list" if value.startswith("[") else "single"
        if match["op"] not in rules.get("operators", {}).get(kind, []):
            return f"operator '{match['op']}' with a {kind} value is not allowed on " \
                   f"'{match['field']}'"
        value_schema = rules.get("value", {})
        must_quote = value_schema.get("type") == "string" and value_schema.get(
            "format") != "date-time"
        if kind == "single" and must_quote and value[0] not in "'\"":
            return f"the value for '{match['field']}' must be quoted"
        if kind == "single" and value_schema.get("format") == "date-time" \
                and not _is_datetime(value):
            return f"the value for '{match['field']}' must be an unquoted ISO 8601 datetime"
        position = match.end()
        if position == len(text):
            return None
        if text[position] != ",":
            return "conditions must be separated by commas"
        position += 1


def _is_datetime(value: str) -> bool:
    """Klaviyo's grammar: datetimes unquoted, ISO 8601 with a zone (``Z`` or an offset)."""
    if value[0] in "'\"" or not re.fullmatch(r"\d{4}-\d{2}-\d{2}T[0-9:.]+(Z|[+-]\d{2}:\d{2})",
                                             value):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


# -- spec navigation ---------------------------------------------------------------------


@functools.cache
def _path_templates() -> list[tuple[re.Pattern[str], str]]:
    templates = []
    for template in _spec_document()["paths"]:
        regex = "^" + re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(template)) + "$"
        templates.append((re.compile(regex), template))
    # Literal segments beat parameters ("/api/lists/{id}" vs a fixed sibling path).
    templates.sort(key=lambda item: item[1].count("{"))
    return templates


def _operation(method: str, path: str) -> dict[str, Any] | None:
    for regex, template in _path_templates():
        if regex.match(path):
            operation = _spec_document()["paths"][template].get(method.lower())
            if operation is not None:
                return _resolved(operation)
    return None


def _resolved(node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        node = _lookup(node["$ref"])
    return node


def _lookup(reference: str) -> Any:
    node: Any = _spec_document()
    for part in reference.lstrip("#/").split("/"):
        node = node[part]
    return node


def _unknown_members(value: Any, schema: Any, pointer: str) -> Iterator[str]:
    schema = _resolved(schema)
    if not isinstance(schema, dict) or "oneOf" in schema or "anyOf" in schema:
        return
    properties = dict(schema.get("properties", {}))
    for part in schema.get("allOf", []):
        properties.update(_resolved(part).get("properties", {}))
    if isinstance(value, dict) and properties and "additionalProperties" not in schema:
        for key, member in value.items():
            if key not in properties:
                yield f"{pointer}/{key}"
            else:
                yield from _unknown_members(member, properties[key], f"{pointer}/{key}")
    elif isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            yield from _unknown_members(item, schema["items"], f"{pointer}/{index}")
