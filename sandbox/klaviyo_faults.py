"""Fault injection for the Klaviyo sandbox: interceptors that answer chosen operations with
the errors the real API gives (429 with Retry-After, 5xx, a 400 with a pointer).

Install one with ``sandbox.interceptors.append(Fault(...))``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from sandbox.httpserver import Request, Response
from sandbox.klaviyo_errors import ApiError


def error_response(status: int, *, retry_after: int | None = None,
                   pointer: str = "/data/attributes") -> Response:
    if status == 429:
        error = ApiError(429, "throttled", "Request was throttled.",
                         f"Request was throttled. Expected available in {retry_after or 1} second.",
                         pointer="/data",
                         headers={"Retry-After": str(retry_after)} if retry_after else None)
    elif status >= 500:
        error = ApiError(status, "error", "A server error occurred.", "Please try again later.")
    else:
        error = ApiError(status, "invalid", "Invalid input.", "Invalid input.", pointer=pointer)
    return error.response()


class Fault:
    """Answer ``operation`` with ``status`` for the first ``times`` matching requests
    (every matching request when ``times`` is None)."""

    def __init__(
        self,
        operation: str,
        status: int,
        *,
        times: int | None = 1,
        retry_after: int | None = None,
        pointer: str = "/data/attributes",
        match: Callable[[Request], bool] | None = None,
    ) -> None:
        self.operation, self.status, self.times = operation, status, times
        self.retry_after, self.pointer, self.match = retry_after, pointer, match
        self.fired = 0
        self._lock = threading.Lock()

    def __call__(self, request: Request, operation_id: str) -> Response | None:
        if operation_id != self.operation or (self.match and not self.match(request)):
            return None
        with self._lock:
            if self.times is not None and self.fired >= self.times:
                return None
            self.fired += 1
        return error_response(self.status, retry_after=self.retry_after, pointer=self.pointer)


def body_contains(text: str) -> Callable[[Request], bool]:
    """Match requests whose body mentions ``text`` (e.g. a customer's external id)."""
    needle = text.encode()
    return lambda request: needle in request.body
