"""Klaviyo's error documents: one exception type the handlers raise, turned into the JSON:API
error body real responses carry (``status``, ``links`` and ``meta`` included, which the spec's
generic error schema omits).
"""

from __future__ import annotations

import uuid
from typing import Any

from sandbox.httpserver import Response

JSON_API = "application/vnd.api+json"


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        title: str,
        detail: str,
        *,
        pointer: str | None = None,
        parameter: str | None = None,
        meta: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}")
        self.status, self.code, self.title, self.detail = status, code, title, detail
        self.pointer, self.parameter = pointer, parameter
        self.meta = meta or {}
        self.headers = headers or {}

    def document(self) -> dict[str, Any]:
        source: dict[str, str] = {}
        if self.pointer is not None:
            source["pointer"] = self.pointer
        if self.parameter is not None:
            source["parameter"] = self.parameter
        return {"errors": [{
            "id": str(uuid.uuid4()),
            "status": self.status,
            "code": self.code,
            "title": self.title,
            "detail": self.detail,
            "source": source,
            "links": {},
            "meta": self.meta,
        }]}

    def response(self) -> Response:
        return Response(self.status, self.document(), dict(self.headers), content_type=JSON_API)


def invalid(detail: str, *, pointer: str | None = None, parameter: str | None = None) -> ApiError:
    return ApiError(400, "invalid", "Invalid input.", detail, pointer=pointer, parameter=parameter)


def invalid_filter() -> ApiError:
    return invalid("Invalid filter provided", parameter="filter")


def not_found(detail: str) -> ApiError:
    return ApiError(404, "not_found", "Not found.", detail)


def duplicate_profile(profile_id: str) -> ApiError:
    return ApiError(
        409, "duplicate_profile", "Conflict.",
        "A profile already exists with one of these identifiers.",
        pointer="/data/attributes", meta={"duplicate_profile_id": profile_id},
    )


def not_authenticated() -> ApiError:
    return ApiError(401, "not_authenticated", "Authentication credentials were not provided.",
                    "Missing or invalid private key.", pointer="/data/")


def unsupported_media_type(content_type: str) -> ApiError:
    return ApiError(415, "unsupported_media_type", "Unsupported media type.",
                    f'Unsupported media type "{content_type}" in request.')


def method_not_allowed(method: str) -> ApiError:
    return ApiError(405, "method_not_allowed", "Method not allowed.",
                    f'Method "{method}" not allowed.')
