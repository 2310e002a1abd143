"""A Klaviyo rate limiter shared by every worker process on every machine, kept in Redis.

Each (account, tier) has two sliding-window logs (sorted sets of grant times): one of
1 s + margin holding at most ``burst`` grants and one of 60 s + margin holding at most
``steady``, plus a penalty key set after a 429. One Lua script checks all three and takes
a slot atomically, with Redis ``TIME`` as the clock, so the whole fleet shares one clock
and no two workers can take the same last slot.

Why sliding windows wider than Klaviyo's fixed ones: any ``limit + 1`` grants then span at
least ``window + margin``, so however Klaviyo aligns its fixed windows, and as long as
requests reach it within ``margin`` of their grant, no window sees more than the limit.
"""

from __future__ import annotations

import hashlib
import itertools
import secrets
import time
from collections.abc import Callable
from typing import Any

import redis

from worker.adapters import keys
from worker.core.errors import ConfigurationError, RateLimited

BURST_WINDOW_SECONDS = 1.0
STEADY_WINDOW_SECONDS = 60.0
MICROS = 1_000_000
# Keys outlive their window a little, so an idle account leaves nothing behind for long.
EXPIRY_SLACK_MS = 1000

# KEYS: burst log, steady log, penalty.  ARGV: burst limit, steady limit, burst window µs,
# steady window µs, unique member, expiry slack ms.
# Returns 0 when a slot was taken, else the microseconds until one can be (always > 0).
_ACQUIRE_LUA = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local wait = 0

local penalty_until = tonumber(redis.call('GET', KEYS[3]) or '0')
if penalty_until > now then wait = penalty_until - now end

local function wait_for(key, limit, window)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  local count = redis.call('ZCARD', key)
  if count < limit then return 0 end
  -- The slot frees when the entry `limit` places from the newest leaves the window;
  -- with limits lowered at run time there may be more than `limit` entries.
  local blocker = redis.call('ZRANGE', key, count - limit, count - limit, 'WITHSCORES')
  return tonumber(blocker[2]) + window - now
end

local limits = {{KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[3])},
                {KEYS[2], tonumber(ARGV[2]), tonumber(ARGV[4])}}
for _, bucket in ipairs(limits) do
  local w = wait_for(bucket[1], bucket[2], bucket[3])
  if w > wait then wait = w end
end
if wait > 0 then return math.max(1, math.ceil(wait)) end

local slack = tonumber(ARGV[6])
for _, bucket in ipairs(limits) do
  redis.call('ZADD', bucket[1], now, ARGV[5])
  redis.call('PEXPIRE', bucket[1], math.ceil(bucket[3] / 1000) + slack)
end
return 0
"""

# KEYS: penalty.  ARGV: penalty µs.  Extends (never shortens) the current penalty.
_PENALIZE_LUA = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local wanted = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if wanted > current then
  redis.call('SET', KEYS[1], string.format('%d', wanted),
             'PX', math.ceil((wanted - now) / 1000) + 1)
end
return 0
"""


def account_id(api_key: str) -> str:
    """A short, stable, non-reversible id for an API key, safe to put in Redis key names."""
    digest = hashlib.sha256(b"ipaas-klaviyo/rate-limit\x00" + api_key.strip().encode())
    return digest.hexdigest()[:16]


class RedisRateLimiter:
    """Fleet-wide slots for one Klaviyo account; ``limits`` maps tier → (burst, steady)."""

    def __init__(
        self,
        client: redis.Redis,
        account: str,
        limits: dict[str, tuple[int, int]],
        *,
        prefix: str | None = None,
        margin_seconds: float = 0.1,
        max_wait_seconds: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        # `account` is an opaque id (see account_id), never the key itself.
        for tier, (burst, steady) in limits.items():
            if burst < 1 or steady < 1:
                raise ConfigurationError(f"rate limits for tier {tier} must be at least 1")
        if margin_seconds < 0 or max_wait_seconds < 0:
            raise ConfigurationError("rate limiter margin and max wait must not be negative")
        self._client = client
        self._account = account
        self._limits = dict(limits)
        self._prefix = keys.key(keys.RATE_LIMIT, prefix)
        self._burst_window_us = round((BURST_WINDOW_SECONDS + margin_seconds) * MICROS)
        self._steady_window_us = round((STEADY_WINDOW_SECONDS + margin_seconds) * MICROS)
        self._max_wait = max_wait_seconds
        self._sleep = sleep
        self._acquire_script = client.register_script(_ACQUIRE_LUA)
        self._penalize_script = client.register_script(_PENALIZE_LUA)
        # Members of the logs must be unique fleet-wide: a random id per limiter plus a count.
        self._member_prefix = secrets.token_hex(8)
        self._counter = itertools.count()

    def __repr__(self) -> str:
        return f"RedisRateLimiter(account={self._account!r}, tiers={sorted(self._limits)})"

    def try_acquire(self, tier: str) -> float:
        """Take a slot of ``tier`` if one is free: 0.0 if taken, else seconds until one is."""
        burst, steady = self._limits_for(tier)
        member = f"{self._member_prefix}:{next(self._counter)}"
        waited_us = self._acquire_script(
            keys=[self._key(tier, "burst"), self._key(tier, "steady"), self._key(tier, "penalty")],
            args=[burst, steady, self._burst_window_us, self._steady_window_us, member,
                  EXPIRY_SLACK_MS],
        )
        return int(waited_us) / MICROS

    def acquire(self, tier: str, max_wait: float | None = None) -> float:
        """Block until a slot of ``tier`` is taken; return the seconds spent waiting.

        Raises RateLimited (``retry_after`` = the wait still needed) instead of waiting
        past ``max_wait_seconds`` (or ``max_wait``, when shorter: the time the running step
        has left), so a task retries later rather than holding a worker.
        """
        limit = self._max_wait if max_wait is None else min(self._max_wait, max_wait)
        waited = 0.0
        while True:
            wait = self.try_acquire(tier)
            if wait == 0.0:
                return waited
            if waited + wait > limit:
                raise RateLimited(
                    f"rate limiter: tier {tier} has no free slot for {wait:.2f}s",
                    retry_after=wait,
                )
            self._sleep(wait)
            waited += wait

    def penalize(self, tier: str, seconds: float) -> None:
        """After a 429: no process in the fleet gets a slot of ``tier`` for ``seconds``."""
        if seconds <= 0:
            return
        self._penalize_script(keys=[self._key(tier, "penalty")],
                              args=[round(seconds * MICROS)])

    def recent_grants(self, tier: str) -> list[float]:
        """Redis-clock times (seconds) of the grants still in the steady window, oldest
        first: for diagnostics and for tests that check what the fleet actually did."""
        entries: list[Any] = self._client.zrange(
            self._key(tier, "steady"), 0, -1, withscores=True)
        return [float(entry[1]) / MICROS for entry in entries]

    def usage(self, tier: str) -> tuple[int, int]:
        """Grants of ``tier`` in the last second and in the last minute (Redis clock), to
        set against its (burst, steady) limits."""
        seconds, micros = self._client.time()
        now = seconds + micros / MICROS
        grants = self.recent_grants(tier)
        return (sum(1 for t in grants if t > now - BURST_WINDOW_SECONDS),
                sum(1 for t in grants if t > now - STEADY_WINDOW_SECONDS))

    @property
    def limits(self) -> dict[str, tuple[int, int]]:
        return dict(self._limits)

    def _limits_for(self, tier: str) -> tuple[int, int]:
        try:
            return self._limits[tier]
        except KeyError:
            raise ConfigurationError(f"rate limiter has no limits for tier {tier}") from None

    def _key(self, tier: str, part: str) -> str:
        # The braces make the three keys of a bucket share one Redis Cluster hash slot,
        # which a script touching all of them needs.
        return f"{self._prefix}:{{{self._account}:{tier}}}:{part}"
