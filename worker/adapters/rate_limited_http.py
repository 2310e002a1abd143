"""An HttpAdapter for Klaviyo calls that waits for a fleet-wide rate-limit slot first.

Only the Klaviyo client is given this adapter; iPaaS.com calls keep the plain one. A 429
that still gets through (another integration on the same key, limits lower than
configured) stops the whole fleet for that tier for the Retry-After time, rather than
letting every worker find out on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import requests

from worker.adapters.http import HttpAdapter
from worker.adapters.step_deadline import time_left
from worker.core.classify import Classification
from worker.core.errors import RateLimited, ThrottledError
from worker.core.rate_limits import tier_for

# When a 429 names no Retry-After, Klaviyo's usual "Expected available in 1 second".
DEFAULT_PENALTY_SECONDS = 1.0


class SlotLimiter(Protocol):
    def acquire(self, tier: str, max_wait: float | None = None) -> float: ...

    def penalize(self, tier: str, seconds: float) -> None: ...


class RateLimitedHttp(HttpAdapter):
    def __init__(
        self,
        inner: HttpAdapter,
        limiter: SlotLimiter,
        *,
        tier_of: Callable[[str], str] = tier_for,
    ) -> None:
        super().__init__(inner.session, timeout=inner.timeout, on_response=inner.on_response)
        self._inner = inner
        self._limiter = limiter
        self._tier_of = tier_of

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
        """Wait for a slot of the operation's tier (RateLimited if the wait would be too
        long, or would leave the running step no time for the call), then send through the
        wrapped adapter; a 429 penalizes the tier fleet-wide."""
        tier = self._tier_of(operation)
        left = time_left()
        if left is None:
            self._limiter.acquire(tier)
        else:
            # Inside a step: wait only as long as leaves time for the call itself.
            budget = left - self.timeout
            if budget <= 0:
                raise RateLimited("no time left in this step for another Klaviyo call",
                                  retry_after=1.0)
            self._limiter.acquire(tier, max_wait=budget)
        try:
            return self._inner.send(operation, method, url, headers=headers, params=params,
                                    json_body=json_body)
        except ThrottledError as exc:
            self._limiter.penalize(tier, exc.retry_after or DEFAULT_PENALTY_SECONDS)
            raise
