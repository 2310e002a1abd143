"""The small HTTP adapter every outside call goes through.

It turns transport failures and non-2xx answers into the worker's error hierarchy using
the pure classifier. Error messages name the operation and status, never the response
body: bodies can carry personal data.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import requests

from worker.core.classify import Classification, Verdict, classify_response
from worker.core.errors import RetryableError, ThrottledError

# Called after every answer with (operation name, HTTP status or 0 for a transport error).
ResponseHook = Callable[[str, int], None]


class HttpAdapter:
    def __init__(
        self,
        session: requests.Session,
        *,
        timeout: float = 15.0,
        on_response: ResponseHook | None = None,
    ) -> None:
        self.session = session
        self.timeout = timeout
        self.on_response = on_response

    def send(
        self,
        operation: str,
        method: str,
        url: str,
        *,
        headers: dict[str, str],
        params: dict[str, Any] | None = None,
        json_body: Any = None,
    ) -> tuple[requests.Response, Classification]:
        """Send one request; raise RetryableError for transport failures, 429 and 5xx.

        Other outcomes (2xx, 404, 409, other 4xx) are returned with their classification
        so the caller decides what they mean for its operation.
        """
        data: str | None = None
        if json_body is not None:
            data = json.dumps(json_body, separators=(",", ":"))
        try:
            response = self.session.request(
                method, url, headers=headers, params=params, data=data, timeout=self.timeout
            )
        except requests.Timeout as exc:
            self._notify(operation, 0)
            raise RetryableError(f"{operation}: timed out") from exc
        except requests.ConnectionError as exc:
            self._notify(operation, 0)
            raise RetryableError(f"{operation}: connection failed") from exc
        self._notify(operation, response.status_code)
        body_hint = response.text[:2000] if response.status_code in (403, 429) else ""
        verdict = classify_response(response.status_code, dict(response.headers), body_hint)
        if verdict.verdict is Verdict.THROTTLED:
            raise ThrottledError(
                f"{operation}: throttled (429)", retry_after=verdict.retry_after
            )
        if verdict.verdict is Verdict.RETRY:
            raise RetryableError(
                f"{operation}: HTTP {response.status_code}", retry_after=verdict.retry_after
            )
        return response, verdict

    def _notify(self, operation: str, status: int) -> None:
        if self.on_response is not None:
            self.on_response(operation, status)
