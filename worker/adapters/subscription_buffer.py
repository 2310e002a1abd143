"""The Redis buffer where subscription and list actions of many customers wait for one
Klaviyo call, and the bookkeeping that keeps their outcomes per customer.

Layout under ``{prefix}:subs``:
  ``buf:{batch key}``                list of queued items waiting for a flush
  ``flush:{batch key}``              marker: a flush for this key is already scheduled
  ``inflight:{batch key}:{batch}``   list of the items one flush took and is sending
  ``leases:{batch key}``             sorted set batch id → until when its flush owns it
  ``buffers``                        set of every ``buf:`` key (for the lost-task sweep)
  ``step:{step id}``                 hash of one customer's lists step: ids, how many of its
                                     actions are still unsent (``remaining``, one ``a:{n}``
                                     field per unsent action) and its first refusal

Personal data: a queued item holds the email and phone number a consent job needs. This is
the one place they wait in Redis; the lists are deleted as soon as their batch is sent and
expire after ``ttl_seconds`` whatever happens, so an abandoned buffer does not keep them.
Every change that must not be half done (queue a step, take a batch, reclaim an abandoned
batch, settle an action) is one Lua script.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import redis

from worker.adapters import keys
from worker.adapters.links import require_decoded
from worker.core.batch_outcomes import QueuedItem
from worker.core.errors import FieldError

Clock = Callable[[], float]

# KEYS[1] step hash, KEYS[2] the registry of buffers, KEYS[3..] the buffer of each item (in
# action order). ARGV: ttl, number of step field pairs m, the 2m step fields, then one item
# per buffer key. Returns nil when the step was queued before (a redelivered task), else
# each buffer's length.
_QUEUE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return nil end
local ttl, m = tonumber(ARGV[1]), tonumber(ARGV[2])
for i = 1, m do
  redis.call('HSET', KEYS[1], ARGV[1 + 2 * i], ARGV[2 + 2 * i])
end
redis.call('HSET', KEYS[1], 'remaining', #KEYS - 2)
local lengths = {}
for i = 3, #KEYS do
  redis.call('HSET', KEYS[1], 'a:' .. (i - 3), 1)
  lengths[i - 2] = redis.call('RPUSH', KEYS[i], ARGV[2 + 2 * m + i - 2])
  redis.call('EXPIRE', KEYS[i], ttl)
  redis.call('SADD', KEYS[2], KEYS[i])
end
redis.call('EXPIRE', KEYS[1], ttl)
return lengths
"""

# KEYS: buffer, in-flight list, leases. ARGV: limit, batch id, lease until, ttl.
_TAKE = """
local items = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
if #items == 0 then return items end
redis.call('LTRIM', KEYS[1], #items, -1)
redis.call('RPUSH', KEYS[2], unpack(items))
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
redis.call('EXPIRE', KEYS[3], ARGV[4])
return items
"""

# KEYS: leases, in-flight list. ARGV: batch id, now, new lease until.
# Only one caller wins an abandoned batch: the lease must still be expired when it asks.
_RECLAIM = """
local lease = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not lease or tonumber(lease) > tonumber(ARGV[2]) then return nil end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return redis.call('LRANGE', KEYS[2], 0, -1)
"""

# KEYS: step hash. ARGV: action index, refusal reason ('' when sent), errors JSON, keep-for.
# Settling an action twice (a batch sent again after a crash) changes nothing. Returns the
# step's fields when this was its last unsent action — or, settled before, when the step's
# outcome was never recorded (the flush that settled it died first) — nil otherwise.
_SETTLE = """
if redis.call('HDEL', KEYS[1], 'a:' .. ARGV[1]) == 0 then
  local remaining = redis.call('HGET', KEYS[1], 'remaining')
  if not remaining or tonumber(remaining) > 0 then return nil end
  if redis.call('HEXISTS', KEYS[1], 'recorded') == 1 then return nil end
  return redis.call('HGETALL', KEYS[1])
end
if ARGV[2] ~= '' and not redis.call('HGET', KEYS[1], 'reason') then
  redis.call('HSET', KEYS[1], 'reason', ARGV[2], 'errors', ARGV[3])
end
if redis.call('HINCRBY', KEYS[1], 'remaining', -1) > 0 then return nil end
redis.call('EXPIRE', KEYS[1], ARGV[4])
return redis.call('HGETALL', KEYS[1])
"""


@dataclass(frozen=True)
class QueuedStep:
    """One customer's lists step, waiting for its actions' batches."""

    step_id: str
    customer_id: str
    profile_id: str
    collection: str
    tracking_guid: str | None = None
    queued_at: float = 0.0


@dataclass(frozen=True)
class SettledStep:
    """A lists step whose every action was sent or refused."""

    step: QueuedStep
    reason: str | None  # the first refusal's reason; None when every action went through
    errors: list[FieldError]


@dataclass(frozen=True)
class InFlight:
    batch_id: str
    items: list[QueuedItem]


_MIN_MARKER_SECONDS = 10.0


def marker_seconds(window: float) -> float:
    """A scheduled flush's marker outlives the window a few times over: a flush that is late
    (a busy queue) is not doubled, one that was lost is replaced when the marker expires."""
    return max(_MIN_MARKER_SECONDS, 5 * window)


class SubscriptionBuffer:
    def __init__(self, client: redis.Redis, prefix: str | None = None, *,
                 ttl_seconds: int = 24 * 3600, settled_keep_seconds: int = 3600,
                 now: Clock = time.time) -> None:
        require_decoded(client)
        self._redis = client
        self._prefix = keys.key(keys.SUBSCRIPTIONS, prefix)
        self.ttl_seconds = ttl_seconds
        self.settled_keep_seconds = settled_keep_seconds
        self._now = now
        self._queue = client.register_script(_QUEUE)
        self._take = client.register_script(_TAKE)
        self._reclaim = client.register_script(_RECLAIM)
        self._settle = client.register_script(_SETTLE)

    # -- keys --------------------------------------------------------------------------

    def buffer_key(self, key: str) -> str:
        return f"{self._prefix}:buf:{key}"

    def marker_key(self, key: str) -> str:
        return f"{self._prefix}:flush:{key}"

    def inflight_key(self, key: str, batch_id: str) -> str:
        return f"{self._prefix}:inflight:{key}:{batch_id}"

    def leases_key(self, key: str) -> str:
        return f"{self._prefix}:leases:{key}"

    def step_key(self, step_id: str) -> str:
        return f"{self._prefix}:step:{step_id}"

    @property
    def registry_key(self) -> str:
        """Every buffer that ever held an item: a handful (kind x list), never pruned."""
        return f"{self._prefix}:buffers"

    def batch_keys(self) -> list[str]:
        prefix = self.buffer_key("")
        return sorted(str(k)[len(prefix):] for k in self._redis.smembers(self.registry_key))

    def oldest_wait(self, key: str) -> float | None:
        """Seconds the first item waiting under ``key`` has waited; None when none waits."""
        first = cast(str | None, self._redis.lindex(self.buffer_key(key), 0))
        if first is None:
            return None
        queued_at = self._redis.hget(self.step_key(QueuedItem.from_json(first).step_id),
                                     "queued_at")
        # An item whose step record is gone has waited longer than anything: send it.
        return self._now() - float(cast(str, queued_at)) if queued_at else float("inf")

    # -- queueing ----------------------------------------------------------------------

    def queue(self, step: QueuedStep, items: list[tuple[str, QueuedItem]]
              ) -> dict[str, int] | None:
        """Record the step and append each (batch key, item), items in action order with
        ``item.action`` equal to its position. Returns the length of every buffer touched,
        or None when this step was queued already (nothing is added twice)."""
        if any(item.action != n for n, (_, item) in enumerate(items)):
            raise ValueError("items must be numbered by their position")
        fields = {"customer_id": step.customer_id, "profile_id": step.profile_id,
                  "collection": step.collection, "tracking_guid": step.tracking_guid or "",
                  "queued_at": repr(step.queued_at or self._now())}
        flat = [part for pair in fields.items() for part in pair]
        lengths = self._queue(
            keys=[self.step_key(step.step_id), self.registry_key,
                  *(self.buffer_key(k) for k, _ in items)],
            args=[self.ttl_seconds, len(fields), *flat, *(item.to_json() for _, item in items)],
        )
        if lengths is None:
            return None
        return {key: int(n) for (key, _), n in zip(items, cast(list[Any], lengths), strict=True)}

    def claim_flush(self, key: str, ttl_seconds: float) -> bool:
        """True for the one caller that should schedule the key's next flush. The marker
        expires, so a flush task that is lost or late only delays, never blocks, the key."""
        ms = max(1, int(ttl_seconds * 1000))
        return bool(self._redis.set(self.marker_key(key), "1", nx=True, px=ms))

    def claim_watch(self, key: str, ttl_seconds: float) -> bool:
        """Like ``claim_flush``, for the one check scheduled for when another flush's lease
        on a batch of this key runs out."""
        ms = max(1, int(ttl_seconds * 1000))
        return bool(self._redis.set(f"{self.marker_key(key)}:watch", "1", nx=True, px=ms))

    def release_flush(self, key: str) -> None:
        self._redis.delete(self.marker_key(key))

    def waiting(self, key: str) -> int:
        return int(cast(int, self._redis.llen(self.buffer_key(key))))

    # -- batches -----------------------------------------------------------------------

    def take(self, key: str, limit: int, lease_seconds: float) -> InFlight | None:
        """Move up to ``limit`` items to a new in-flight batch this caller owns for
        ``lease_seconds``; None when nothing waits."""
        batch_id = uuid.uuid4().hex
        raw = self._take(
            keys=[self.buffer_key(key), self.inflight_key(key, batch_id), self.leases_key(key)],
            args=[limit, batch_id, repr(self._now() + lease_seconds), self.ttl_seconds],
        )
        items = [QueuedItem.from_json(text) for text in cast(list[str], raw)]
        return InFlight(batch_id, items) if items else None

    def abandoned(self, key: str, for_seconds: float = 0.0) -> list[str]:
        """Batches whose flush let its lease run out (``for_seconds`` ago or longer): it
        died (or hung) while sending."""
        until = repr(self._now() - for_seconds)
        found = self._redis.zrangebyscore(self.leases_key(key), "-inf", until)
        return list(cast(list[str], found))

    def next_lease_end(self, key: str) -> float | None:
        first = cast(list[tuple[str, float]],
                     self._redis.zrange(self.leases_key(key), 0, 0, withscores=True))
        return float(first[0][1]) if first else None

    def reclaim(self, key: str, batch_id: str, lease_seconds: float) -> InFlight | None:
        """Take over an abandoned batch (only one caller wins it); None when it is not
        abandoned any more. A batch whose items are gone is acknowledged and dropped."""
        raw = self._reclaim(
            keys=[self.leases_key(key), self.inflight_key(key, batch_id)],
            args=[batch_id, repr(self._now()), repr(self._now() + lease_seconds)],
        )
        if raw is None:
            return None
        items = [QueuedItem.from_json(text) for text in cast(list[str], raw)]
        if not items:
            self.ack(key, batch_id)
            return None
        return InFlight(batch_id, items)

    def in_flight(self, key: str, batch_id: str) -> InFlight | None:
        """The batch as its owner (a retry of the same flush) left it."""
        raw = cast(list[str], self._redis.lrange(self.inflight_key(key, batch_id), 0, -1))
        items = [QueuedItem.from_json(text) for text in raw]
        return InFlight(batch_id, items) if items else None

    def extend(self, key: str, batch_id: str, seconds: float) -> None:
        """Keep owning the batch for ``seconds`` more (a retry waiting for its countdown)."""
        self._redis.zadd(self.leases_key(key), {batch_id: self._now() + seconds}, xx=True)

    def ack(self, key: str, batch_id: str) -> None:
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(self.inflight_key(key, batch_id))
        pipe.zrem(self.leases_key(key), batch_id)
        pipe.execute()

    # -- outcomes ----------------------------------------------------------------------

    def recorded(self, step_id: str) -> None:
        """The step's outcome is written (history, dead letter, result): settling it again
        returns nothing."""
        self._redis.hset(self.step_key(step_id), "recorded", "1")

    def settle(self, item: QueuedItem, refusal: tuple[str, list[FieldError]] | None = None
               ) -> SettledStep | None:
        """Mark one action sent (or refused); return the step when it was its last one, and
        again after a crash until ``recorded`` says its outcome was written."""
        reason, errors = refusal if refusal is not None else ("", [])
        raw = self._settle(
            keys=[self.step_key(item.step_id)],
            args=[item.action, reason, json.dumps([e.as_dict() for e in errors]),
                  self.settled_keep_seconds],
        )
        if raw is None:
            return None
        values = cast(list[str], raw)
        fields = dict(zip(values[::2], values[1::2], strict=True))
        step = QueuedStep(
            step_id=item.step_id, customer_id=fields.get("customer_id", item.customer_id),
            profile_id=fields.get("profile_id", item.profile_id),
            collection=fields.get("collection", ""),
            tracking_guid=fields.get("tracking_guid") or None,
            queued_at=float(fields.get("queued_at") or 0.0),
        )
        stored_errors = [FieldError(**e) for e in json.loads(fields.get("errors") or "[]")]
        return SettledStep(step, fields.get("reason") or None, stored_errors)

    def claim_stalled(self, *, after_seconds: float, window: float) -> list[str]:
        """The lost-task sweep's share for batches (worker/tasks/lost_tasks.py): a key whose
        oldest item has waited ``after_seconds``, or whose batch lease ran out that long ago,
        had its flush lost. Returns those keys whose flush marker this call took (the caller
        sends their flush); a key with a flush scheduled is left alone."""
        stalled: list[str] = []
        for key in self.batch_keys():
            waited = self.oldest_wait(key)
            lost = (waited is not None and waited >= after_seconds) or bool(
                self.abandoned(key, for_seconds=after_seconds))
            if lost and self.claim_flush(key, marker_seconds(window)):
                stalled.append(key)
        return stalled
