"""Fault injection for the Klaviyo sandbox: interceptors that answer chosen operations with
the errors the real API gives (429 with Retry-After, 5xx, a 400 with a pointer), either
scripted (``Fault``) or at seeded random rates with latency and dropped connections
(``RandomFaults``).

Install one with ``sandbox.interceptors.append(Fault(...))``.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from collections.abc import Set as AbstractSet

from sandbox.httpserver import DROP, Request, Response
from sandbox.klaviyo_errors import ApiError

RATE_LIMIT_DOCS = "https://developers.klaviyo.com/en/docs/rate_limits_and_error_handling#rate-limits"

PROFILE_OPERATIONS: frozenset[str] = frozenset({
    "create_or_update_profile", "update_profile", "create_profile", "get_profiles", "get_profile",
})


def throttled(retry_after: int | None) -> Response:
    """Klaviyo's 429 as observed: ``throttled`` with "Expected available in N second(s)" and,
    when given, a ``Retry-After`` header."""
    wait = retry_after or 1
    unit = "second" if wait == 1 else "seconds"
    error = ApiError(429, "throttled", "Request was throttled.",
                     f"Request was throttled. Expected available in {wait} {unit}.",
                     pointer="/data",
                     headers={"Retry-After": str(retry_after)} if retry_after else None)
    response = error.response()
    response.body["errors"][0]["links"] = {"type": RATE_LIMIT_DOCS}
    return response


def error_response(status: int, *, retry_after: int | None = None,
                   pointer: str = "/data/attributes") -> Response:
    if status == 429:
        return throttled(retry_after)
    if status >= 500:
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


class RandomFaults:
    """Seeded random failures: each request to one of ``operations`` (every operation when
    None) first waits a uniform ``latency`` delay, then is dropped without an answer with
    probability ``drop_rate``, or answered with status ``s`` with probability
    ``error_rates[s]`` (disjoint: at most one happens), else reaches the endpoint.

    The draws come from one generator under a lock, so a run is reproducible given the same
    request order. ``injected`` counts what was injected, by status (0 for drops).
    """

    def __init__(self, *, seed: int = 0, operations: AbstractSet[str] | None = None,
                 error_rates: dict[int, float] | None = None, retry_after: int = 1,
                 latency: tuple[float, float] = (0.0, 0.0), drop_rate: float = 0.0) -> None:
        rates = dict(error_rates or {})
        if any(rate < 0 for rate in rates.values()) or drop_rate < 0:
            raise ValueError("rates cannot be negative")
        if sum(rates.values()) + drop_rate > 1:
            raise ValueError("error rates and drop rate add up to more than 1")
        if any(status < 400 for status in rates):
            raise ValueError("error_rates keys must be 4xx or 5xx statuses")
        low, high = latency
        if not 0 <= low <= high:
            raise ValueError("latency must be (low, high) with 0 <= low <= high")
        self.operations = frozenset(operations) if operations is not None else None
        self.retry_after, self.latency = retry_after, (low, high)
        # Cumulative thresholds over one uniform draw make the outcomes disjoint.
        self._outcomes: list[tuple[float, int]] = []
        cumulative = 0.0
        for status, rate in [(0, drop_rate), *rates.items()]:
            cumulative += rate
            self._outcomes.append((cumulative, status))
        self.injected: Counter[int] = Counter()
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    def __call__(self, request: Request, operation_id: str) -> Response | None:
        if self.operations is not None and operation_id not in self.operations:
            return None
        with self._lock:
            delay = self._random.uniform(*self.latency) if self.latency[1] else 0.0
            draw = self._random.random()
            status = next((status for threshold, status in self._outcomes if draw < threshold),
                          None)
            if status is not None:
                self.injected[status] += 1
        if delay:
            time.sleep(delay)
        if status is None:
            return None
        if status == 0:
            return DROP
        return error_response(status, retry_after=self.retry_after if status == 429 else None)
