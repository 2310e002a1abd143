"""Burst mode's state in Redis: the fleet-wide switch, the customers waiting for a bulk
import job, and the batches in flight with their checkpoints.

Layout under ``{prefix}:burst``:
  ``mode``                 "1" while burst mode is on (absent: off), for the whole fleet
  ``waiting``              sorted set customer id → when it first waited
  ``rows``                 hash customer id → its WaitingSync JSON (ids only; a later
                           change replaces it and the customer still waits once)
  ``inflight``             hash customer id → the batch it is in; a customer in flight is
                           not taken again until its batch settled it, so two jobs never
                           carry two versions of one customer at once
  ``flush``                marker: a flush is scheduled
  ``draining``             how many queued syncs a flush is moving here right now
  ``leases``               sorted set batch id → until when its current step owns it
  ``batch:{id}:syncs``     list of the syncs the batch took (WaitingSync JSON)
  ``batch:{id}``           list of the batch's prepared rows (BurstRow JSON) in job order
  ``batch:{id}:state``     hash: phase (gather | submit | poll | settle), how many syncs
                           are gathered, job id, polls, owner token
  ``batch:{id}:found``     hash external id → profile id read back after the job ("" none)
  ``batch:{id}:verdicts``  hash customer id → its outcome JSON, until it is recorded

Personal data: a row holds what the profile import sends (as the subscription buffer does
for consent). Rows leave Redis as their batch settles, and every key expires after
``ttl_seconds`` whatever happens.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any, cast

import redis

from worker.adapters import keys
from worker.adapters.broker import queue_keys
from worker.core.burst import BurstRow, WaitingSync

Clock = Callable[[], float]

# KEYS: waiting, rows. ARGV: customer id, row JSON, now.
_ADD = """
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[1], 'NX', ARGV[3], ARGV[1])
return redis.call('ZCARD', KEYS[1])
"""

# KEYS: waiting, rows, inflight, batch syncs, leases, state. ARGV: batch id, lease until,
# ttl, owner token, then the customer ids chosen. A customer already in flight, or taken
# meanwhile, stays.
_TAKE = """
local taken = {}
for i = 5, #ARGV do
  local cid = ARGV[i]
  if redis.call('HEXISTS', KEYS[3], cid) == 0 then
    local row = redis.call('HGET', KEYS[2], cid)
    if row and redis.call('ZREM', KEYS[1], cid) == 1 then
      redis.call('HDEL', KEYS[2], cid)
      redis.call('HSET', KEYS[3], cid, ARGV[1])
      redis.call('RPUSH', KEYS[4], row)
      taken[#taken + 1] = row
    end
  end
end
if #taken > 0 then
  redis.call('EXPIRE', KEYS[4], ARGV[3])
  redis.call('HSET', KEYS[6], 'phase', 'gather', 'gathered', 0, 'owner', ARGV[4])
  redis.call('EXPIRE', KEYS[6], ARGV[3])
  redis.call('ZADD', KEYS[5], ARGV[2], ARGV[1])
end
return taken
"""

# KEYS: leases, state. ARGV: batch id, token ('' = none), now, new token, lease until.
# The step holding the batch's token, or anyone once the lease ran out (its step died).
_CLAIM = """
local lease = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not lease then return nil end
local owner = redis.call('HGET', KEYS[2], 'owner')
if (ARGV[2] ~= '' and owner == ARGV[2]) or tonumber(lease) <= tonumber(ARGV[3]) then
  redis.call('HSET', KEYS[2], 'owner', ARGV[4])
  redis.call('ZADD', KEYS[1], ARGV[5], ARGV[1])
  return ARGV[4]
end
return nil
"""

# KEYS: inflight, verdicts. ARGV: batch id, then customer ids settled.
_SETTLED = """
for i = 2, #ARGV do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[1] then redis.call('HDEL', KEYS[1], ARGV[i]) end
  redis.call('HDEL', KEYS[2], ARGV[i])
end
return redis.call('HLEN', KEYS[2])
"""


# Customers wait this long for more to join their job; a scheduled flush's marker outlives
# it a few times over (a late flush is not doubled, a lost one is replaced when it expires).
FLUSH_WINDOW_SECONDS = 3.0
FLUSH_MARKER_SECONDS = 5 * FLUSH_WINDOW_SECONDS


class BurstBuffer:
    def __init__(self, client: redis.Redis, prefix: str | None = None, *,
                 ttl_seconds: int = 24 * 3600, now: Clock = time.time) -> None:
        self._redis = client
        self._prefix = keys.key(keys.BURST, prefix)
        self.ttl_seconds = ttl_seconds
        self._now = now
        self._add = client.register_script(_ADD)
        self._take = client.register_script(_TAKE)
        self._claim = client.register_script(_CLAIM)
        self._settled = client.register_script(_SETTLED)

    def key(self, name: str) -> str:
        return f"{self._prefix}:{name}"

    def batch_key(self, batch_id: str, part: str = "") -> str:
        return self.key(f"batch:{batch_id}{':' + part if part else ''}")

    # -- the switch --------------------------------------------------------------------

    def mode_and_backlog(self, queue: str, customer_id: str = ""
                         ) -> tuple[bool, int, bool]:
        """Whether burst mode is on; the backlog (syncs queued on ``queue``, customers
        waiting here for a job and customers in batches in flight: a burst ends when its
        batches are done, not when the queue is empty); whether ``customer_id`` is here
        (waiting or in flight). One round trip."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.get(self.key("mode"))
        pipe.hexists(self.key("rows"), customer_id)
        pipe.hexists(self.key("inflight"), customer_id)
        for name in queue_keys(queue):
            pipe.llen(name)
        pipe.zcard(self.key("waiting"))
        pipe.hlen(self.key("inflight"))
        pipe.get(self.key("draining"))
        mode, waiting, flying, *counts = pipe.execute()
        return _text(mode) == "1", sum(int(n or 0) for n in counts), bool(waiting or flying)

    def set_mode(self, on: bool) -> bool:
        """Switch; True when this call changed it (one caller logs the switch)."""
        if on:
            return bool(self._redis.set(self.key("mode"), "1", nx=True))
        return bool(self._redis.delete(self.key("mode")))

    def mode(self) -> bool:
        return _text(self._redis.get(self.key("mode"))) == "1"

    def note_batch(self, customers: int) -> None:
        self._redis.set(self.key("last_batch_customers"), customers)

    def last_batch_customers(self) -> int:
        return int(_text(self._redis.get(self.key("last_batch_customers"))) or 0)

    # -- waiting customers -------------------------------------------------------------

    def add(self, sync: WaitingSync) -> int:
        """Queue (or replace) the customer's sync; returns how many customers wait."""
        return int(cast(int, self._add(keys=[self.key("waiting"), self.key("rows")],
                                       args=[sync.customer_id, sync.to_json(),
                                             sync.queued_at])))

    def add_many(self, syncs: list[WaitingSync]) -> None:
        """``add`` for many customers, in one round trip; a customer in flight is marked
        ``force`` (its stored fingerprint predates its batch)."""
        if not syncs:
            return
        ids = [s.customer_id for s in syncs]
        flights = cast(list[str | None], self._redis.hmget(self.key("inflight"), ids))
        pipe = self._redis.pipeline(transaction=False)
        for sync, flight in zip(syncs, flights, strict=True):
            if flight is not None:
                sync = WaitingSync(sync.customer_id, sync.task_id, sync.tracking_guid, True,
                                   sync.queued_at)
            self._add(keys=[self.key("waiting"), self.key("rows")],
                      args=[sync.customer_id, sync.to_json(), sync.queued_at], client=pipe)
        pipe.execute()

    def waiting(self) -> int:
        return int(cast(int, self._redis.zcard(self.key("waiting"))))

    def in_flight(self, customer_id: str) -> bool:
        return bool(self._redis.hexists(self.key("inflight"), customer_id))

    def claim_flush(self, seconds: float) -> bool:
        return bool(self._redis.set(self.key("flush"), "1", nx=True,
                                    px=max(1, int(seconds * 1000))))

    def release_flush(self) -> None:
        self._redis.delete(self.key("flush"))

    def peek(self, limit: int) -> list[str]:
        """The oldest waiting customers not in flight, up to ``limit``."""
        ids = cast(list[str], self._redis.zrange(self.key("waiting"), 0, limit - 1))
        if not ids:
            return []
        flights = cast(list[str | None], self._redis.hmget(self.key("inflight"), ids))
        return [cid for cid, flight in zip(ids, flights, strict=True) if flight is None]

    def take(self, customer_ids: list[str], lease_seconds: float, token: str
             ) -> tuple[str, list[WaitingSync]]:
        """Move the chosen customers into a new batch, owned by ``token`` for
        ``lease_seconds``."""
        batch_id = uuid.uuid4().hex
        raw = self._take(
            keys=[self.key("waiting"), self.key("rows"), self.key("inflight"),
                  self.batch_key(batch_id, "syncs"), self.key("leases"),
                  self.batch_key(batch_id, "state")],
            args=[batch_id, repr(self._now() + lease_seconds), self.ttl_seconds, token,
                  *customer_ids])
        return batch_id, [WaitingSync.from_json(text) for text in cast(list[str], raw)]

    def syncs(self, batch_id: str, start: int, count: int) -> list[WaitingSync]:
        raw = cast(list[str], self._redis.lrange(self.batch_key(batch_id, "syncs"),
                                                 start, start + count - 1))
        return [WaitingSync.from_json(text) for text in raw]

    def gathered(self, batch_id: str, rows: list[BurstRow], done: int) -> None:
        """Append prepared rows and move the gather checkpoint, together: a step killed
        before this gathers the same syncs again (rows are deduplicated by customer)."""
        pipe = self._redis.pipeline(transaction=True)
        if rows:
            pipe.rpush(self.batch_key(batch_id), *(row.to_json() for row in rows))
            pipe.expire(self.batch_key(batch_id), self.ttl_seconds)
        pipe.hset(self.batch_key(batch_id, "state"), "gathered", done)
        pipe.execute()

    def put_back(self, batch_id: str, syncs: list[WaitingSync]) -> None:
        """Rows that did not fit the job wait again (a newer change, if any, wins)."""
        pipe = self._redis.pipeline(transaction=True)
        for sync in syncs:
            pipe.hsetnx(self.key("rows"), sync.customer_id, sync.to_json())
            pipe.zadd(self.key("waiting"), {sync.customer_id: sync.queued_at}, nx=True)
        pipe.execute()
        self.settled(batch_id, [s.customer_id for s in syncs])

    # -- batches -----------------------------------------------------------------------

    def claim(self, batch_id: str, token: str | None, lease_seconds: float) -> str | None:
        """Own the batch's next step: with the token the previous step handed on, or, when
        its lease ran out, without one. Returns the new token; None: not this caller's."""
        new = uuid.uuid4().hex
        won = self._claim(keys=[self.key("leases"), self.batch_key(batch_id, "state")],
                          args=[batch_id, token or "", repr(self._now()), new,
                                repr(self._now() + lease_seconds)])
        return new if won else None

    def extend(self, batch_id: str, seconds: float) -> None:
        self._redis.zadd(self.key("leases"), {batch_id: self._now() + seconds}, xx=True)

    def abandoned(self, older_than: float = 0.0) -> list[str]:
        until = repr(self._now() - older_than)
        return list(cast(list[str], self._redis.zrangebyscore(self.key("leases"), "-inf", until)))

    def batches(self) -> int:
        return int(cast(int, self._redis.zcard(self.key("leases"))))

    def rows(self, batch_id: str) -> list[BurstRow]:
        raw = cast(list[str], self._redis.lrange(self.batch_key(batch_id), 0, -1))
        return [BurstRow.from_json(text) for text in raw]

    def replace_rows(self, batch_id: str, rows: list[BurstRow]) -> None:
        """The rows still to send after Klaviyo refused some of them at the door."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(self.batch_key(batch_id))
        if rows:
            pipe.rpush(self.batch_key(batch_id), *(row.to_json() for row in rows))
            pipe.expire(self.batch_key(batch_id), self.ttl_seconds)
        pipe.execute()

    def state(self, batch_id: str) -> dict[str, str]:
        return cast(dict[str, str], self._redis.hgetall(self.batch_key(batch_id, "state")))

    def set_state(self, batch_id: str, **fields: Any) -> None:
        self._redis.hset(self.batch_key(batch_id, "state"),
                         mapping={k: str(v) for k, v in fields.items()})

    def save_verdicts(self, batch_id: str, verdicts: dict[str, dict[str, Any]]) -> None:
        key = self.batch_key(batch_id, "verdicts")
        pipe = self._redis.pipeline(transaction=True)
        if verdicts:
            pipe.hset(key, mapping={cid: json.dumps(v) for cid, v in verdicts.items()})
            pipe.expire(key, self.ttl_seconds)
        pipe.hset(self.batch_key(batch_id, "state"), "phase", "settle")
        pipe.execute()

    def found(self, batch_id: str) -> dict[str, str]:
        """The profile ids read back so far (external id → id; "" = not found)."""
        return cast(dict[str, str], self._redis.hgetall(self.batch_key(batch_id, "found")))

    def add_found(self, batch_id: str, found: dict[str, str]) -> None:
        if found:
            key = self.batch_key(batch_id, "found")
            pipe = self._redis.pipeline(transaction=False)
            pipe.hset(key, mapping=cast(Any, found))
            pipe.expire(key, self.ttl_seconds)
            pipe.execute()

    def verdicts(self, batch_id: str, limit: int) -> dict[str, dict[str, Any]]:
        """Up to ``limit`` outcomes still to record."""
        key = self.batch_key(batch_id, "verdicts")
        found: dict[str, str] = {}
        cursor = 0
        while True:  # a scan page may come back empty while entries remain further on
            cursor, page = cast(tuple[int, dict[str, str]],
                                self._redis.hscan(key, cursor, count=limit))
            found.update(page)
            if cursor == 0 or len(found) >= limit:
                break
        return {cid: json.loads(raw) for cid, raw in list(found.items())[:limit]}

    def settled(self, batch_id: str, customer_ids: list[str]) -> int:
        """Those customers' outcomes are recorded; returns how many are left."""
        return int(cast(int, self._settled(
            keys=[self.key("inflight"), self.batch_key(batch_id, "verdicts")],
            args=[batch_id, *customer_ids])))

    def finish(self, batch_id: str) -> None:
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(self.batch_key(batch_id), self.batch_key(batch_id, "state"),
                    self.batch_key(batch_id, "verdicts"), self.batch_key(batch_id, "syncs"),
                    self.batch_key(batch_id, "found"))
        pipe.zrem(self.key("leases"), batch_id)
        pipe.execute()


def _text(value: Any) -> str:
    # The metrics exporter's client may not decode responses.
    return value.decode() if isinstance(value, bytes) else str(value or "")
