"""Klaviyo's rate limits, enforced by the sandbox: fixed burst (1 s) and steady (60 s) windows
per tier, aligned to wall-clock seconds and minutes, shared by every operation of a tier (a
private key shares one quota per account).

The limiter also keeps what a test needs to prove a fleet of workers stays inside the limits:
the most requests that *arrived* in any one window, throttled or not.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sandbox.httpserver import Response
from sandbox.klaviyo_faults import throttled

# (burst per second, steady per minute), from Klaviyo's rate-limit docs.
TIERS: dict[str, tuple[int, int]] = {
    "XS": (1, 15),
    "S": (3, 60),
    "M": (10, 150),
    "L": (75, 750),
    "XL": (350, 3500),
}

# Each served operation's tier, read off its ``x-klaviyo-ratelimit`` in the 2026-07-15 spec
# (a unit test holds this table to the spec). The daily cap on create_list is not modelled.
OPERATION_TIERS: dict[str, str] = {
    "get_profiles": "L",
    "create_profile": "L",
    "get_profile": "L",
    "update_profile": "L",
    "create_or_update_profile": "L",
    "get_lists": "L",
    "create_list": "M",
    "get_list": "L",
    "add_profiles_to_list": "M",
    "remove_profiles_from_list": "M",
    "bulk_subscribe_profiles": "L",
    "bulk_unsubscribe_profiles": "L",
    "bulk_import_profiles": "M",
    "get_bulk_import_profiles_job": "M",
    "get_errors_for_bulk_import_profiles_job": "M",
    "get_profiles_for_bulk_import_profiles_job": "M",
    "get_profile_ids_for_bulk_import_profiles_job": "M",
    "get_list_for_bulk_import_profiles_job": "M",
    "get_list_ids_for_bulk_import_profiles_job": "M",
    "create_event": "XL",
    "bulk_create_events": "M",
    "request_profile_deletion": "S",
}

BURST_SECONDS, STEADY_SECONDS = 1, 60


def tier_limits(scale: float = 1.0,
                overrides: dict[str, tuple[int, int]] | None = None) -> dict[str, tuple[int, int]]:
    """Every tier's (burst, steady) with the documented counts times ``scale`` (never below
    one request), then ``overrides`` taken as given."""
    if scale <= 0:
        raise ValueError("scale must be positive")
    unknown = set(overrides or {}) - set(TIERS)
    if unknown:
        raise ValueError(f"unknown tiers {sorted(unknown)}; known: {sorted(TIERS)}")
    limits = {tier: (max(1, round(burst * scale)), max(1, round(steady * scale)))
              for tier, (burst, steady) in TIERS.items()}
    for tier, (burst, steady) in (overrides or {}).items():
        if burst < 1 or steady < 1:
            raise ValueError(f"tier {tier}: limits must be at least 1 request")
        limits[tier] = (burst, steady)
    return limits


@dataclass
class _Window:
    length: int  # seconds
    limit: int
    index: int = -1  # which window (wall-clock time // length) the counts below belong to
    arrived: int = 0
    admitted: int = 0
    max_arrived: int = 0

    def roll(self, now: float) -> None:
        index = int(now // self.length)
        if index != self.index:
            self.index, self.arrived, self.admitted = index, 0, 0

    def seconds_left(self, now: float) -> int:
        return max(1, math.ceil((self.index + 1) * self.length - now))


@dataclass
class _TierState:
    burst: _Window
    steady: _Window
    seen: int = 0
    throttled: int = 0


@dataclass(frozen=True)
class Admission:
    """The limiter's answer: a 429 to send instead, or headers for the endpoint's answer."""

    refusal: Response | None
    headers: dict[str, str]


PASS = Admission(None, {})


class RateLimiter:
    def __init__(self, limits: dict[str, tuple[int, int]],
                 clock: Callable[[], float] = time.time) -> None:
        self._limits, self._clock = dict(limits), clock
        self._tiers: dict[str, _TierState] = {}
        self._lock = threading.Lock()

    def admit(self, operation_id: str) -> Admission:
        """Count one request to ``operation_id``; refuse it when its tier's burst or steady
        window is full. Refused requests use no quota but still count as seen."""
        tier = OPERATION_TIERS.get(operation_id)
        if tier is None or tier not in self._limits:
            return PASS
        now = self._clock()
        with self._lock:
            state = self._tiers.get(tier)
            if state is None:
                burst_limit, steady_limit = self._limits[tier]
                state = self._tiers[tier] = _TierState(_Window(BURST_SECONDS, burst_limit),
                                                       _Window(STEADY_SECONDS, steady_limit))
            state.seen += 1
            for window in (state.burst, state.steady):
                window.roll(now)
                window.arrived += 1
                window.max_arrived = max(window.max_arrived, window.arrived)
            # The steady window ends later, so when both are full it is the one to wait out.
            blocking = next((window for window in (state.steady, state.burst)
                             if window.admitted >= window.limit), None)
            if blocking is not None:
                state.throttled += 1
                return Admission(throttled(blocking.seconds_left(now)), {})
            state.burst.admitted += 1
            state.steady.admitted += 1
            minute = state.steady
            return Admission(None, {
                "RateLimit-Limit": str(minute.limit),
                "RateLimit-Remaining": str(minute.limit - minute.admitted),
                "RateLimit-Reset": str(minute.seconds_left(now)),
            })

    def stats(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {tier: {
                "burst_limit": state.burst.limit,
                "steady_limit": state.steady.limit,
                "max_seen_per_second": state.burst.max_arrived,
                "max_seen_per_minute": state.steady.max_arrived,
                "throttled": state.throttled,
                "seen": state.seen,
            } for tier, state in self._tiers.items()}
