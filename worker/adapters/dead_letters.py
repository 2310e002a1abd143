"""The dead-letter store: failures a person must look at, one entry per step and subject.

Layout under the prefix:
  ``dlq:entry:{id}``        hash of the entry; every value JSON-encoded (``attempts`` is a
                            plain integer, so HINCRBY counts re-records atomically)
  ``dlq:by_time``           sorted set id → last failure (epoch seconds): listing and trimming
  ``dlq:customer:{id}``     set of entry ids naming that customer; may hold stale ids, which
                            readers skip and drop, and expires with the retention period
  ``dlq:dropped_total``     how many entries trimming dropped (age or count), ever
  ``dlq:by_reason:{code}``  sorted sets id → last failure, one per reason code and one per
  ``dlq:by_step:{step}``    step: the console pages a filter through them and counts them
                            (worker/adapters/dead_letter_pages.py); ``dlq:indexed`` marks
                            them built for entries recorded before they existed

Entries hold field names, reason codes and messages only, never the values that failed; an
``address`` or ``lists`` entry also holds the ids its step needs to run again (``context``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, cast

import redis

from worker.adapters import keys
from worker.adapters.links import require_decoded
from worker.core import reasons
from worker.core.errors import FieldError

logger = logging.getLogger("ipaas_klaviyo.dead_letters")

Clock = Callable[[], datetime]
Entry = dict[str, Any]
# Spelled out here because inside the class ``list`` names the method.
EntryList = list[Entry]
ScoredIds = list[tuple[str, float]]
KeyList = list[str]
TRANSACTION_STEP = "transaction"
STEPS = ("profile", "address", "lists", TRANSACTION_STEP)
LIST_PAGE_SIZE = 500
LAST_ERROR_MAX_CHARS = 500
ENTRY_FIELDS = (
    "id", "customer_id", "step", "reason", "errors", "attempts",
    "first_failed_at", "last_failed_at", "last_error",
)

# Drops an entry only if it was not re-recorded since the caller looked at it (its score
# is still at most the one observed), so trimming never discards a fresh failure.
# Both scripts also take the entry out of its reason and step indexes (ARGV[3]: key prefix;
# the step is the entry id's first part).
# Returns the entry's JSON customer id ("null" when none) when dropped, nil otherwise.
_DROP_IF_UNCHANGED = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) > tonumber(ARGV[2]) then
  return nil
end
local customer_id = redis.call('HGET', KEYS[2], 'customer_id')
local reason = redis.call('HGET', KEYS[2], 'reason')
if reason then redis.call('ZREM', ARGV[3] .. 'by_reason:' .. cjson.decode(reason), ARGV[1]) end
redis.call('ZREM', ARGV[3] .. 'by_step:' .. string.match(ARGV[1], '^[^:]*'), ARGV[1])
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
return customer_id or 'null'
"""

# Deletes an entry, and when ARGV[2] is not empty only if its last failure is still the one
# the caller saw: a replay must never delete a failure recorded after it looked.
# Returns the entry's JSON customer id ("null" when none) when removed, nil otherwise.
_REMOVE_IF_LAST_FAILED_AT = """
if ARGV[2] ~= '' and redis.call('HGET', KEYS[2], 'last_failed_at') ~= ARGV[2] then
  return nil
end
local customer_id = redis.call('HGET', KEYS[2], 'customer_id')
local reason = redis.call('HGET', KEYS[2], 'reason')
if reason then redis.call('ZREM', ARGV[3] .. 'by_reason:' .. cjson.decode(reason), ARGV[1]) end
redis.call('ZREM', ARGV[3] .. 'by_step:' .. string.match(ARGV[1], '^[^:]*'), ARGV[1])
local removed = redis.call('DEL', KEYS[2]) + redis.call('ZREM', KEYS[1], ARGV[1])
if removed == 0 then
  return nil
end
return customer_id or 'null'
"""


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    # A time without an offset is taken as UTC, the only zone the store writes.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


class DeadLetterStore:
    def __init__(
        self,
        client: redis.Redis,
        prefix: str | None = None,
        *,
        retention_seconds: int = 30 * 86400,
        max_entries: int = 100_000,
        now: Clock = utc_now,
    ) -> None:
        require_decoded(client)
        self._redis = client
        self._prefix = keys.key(keys.DEAD_LETTERS, prefix)
        self.index_key = f"{self._prefix}:by_time"
        self.dropped_key = f"{self._prefix}:dropped_total"
        self.retention_seconds = retention_seconds
        self.max_entries = max_entries
        self._now = now
        self._drop_if_unchanged = client.register_script(_DROP_IF_UNCHANGED)
        self._remove_if_unchanged = client.register_script(_REMOVE_IF_LAST_FAILED_AT)

    def entry_key(self, entry_id: str) -> str:
        return f"{self._prefix}:entry:{entry_id}"

    def customer_key(self, customer_id: str) -> str:
        return f"{self._prefix}:customer:{customer_id}"

    def reason_key(self, reason: str) -> str:
        return f"{self._prefix}:by_reason:{reason}"

    def step_key(self, step: str) -> str:
        return f"{self._prefix}:by_step:{step}"

    def record(
        self,
        *,
        customer_id: str | None,
        step: str,
        reason: str,
        errors: list[FieldError],
        transaction_id: str | None = None,
        last_error: str | None = None,
        context: dict[str, str] | None = None,
    ) -> Entry:
        """Record a failure; ``context`` holds the ids (never data) that replay needs to run
        the step through its own task, e.g. ``{"profile_id": ..., "collection": ...}``."""
        entry_id = _entry_id(step, customer_id, transaction_id)
        moment = self._now()
        stamp = iso_utc(moment)
        key = self.entry_key(entry_id)
        # A re-recorded entry with a new reason leaves its old reason's index.
        previous = cast(str | None, self._redis.hget(key, "reason"))
        fields: dict[str, Any] = {
            "id": entry_id,
            "step": step,
            "reason": reason,
            "errors": [error.as_dict() for error in errors],
            "last_failed_at": stamp,
            "last_error": None if last_error is None else last_error[:LAST_ERROR_MAX_CHARS],
        }
        if step == TRANSACTION_STEP:
            fields["transaction_id"] = transaction_id
        if customer_id is not None:
            fields["customer_id"] = customer_id
        if context is not None:
            fields["context"] = {name: str(value) for name, value in context.items()}
        # One MULTI: two workers re-recording the same entry each add their attempt, and the
        # earliest first_failed_at / an already known customer id are kept.
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(key, mapping={name: json.dumps(value) for name, value in fields.items()})
        pipe.hsetnx(key, "customer_id", json.dumps(customer_id))
        pipe.hsetnx(key, "first_failed_at", json.dumps(stamp))
        pipe.hincrby(key, "attempts", 1)
        pipe.expire(key, self.retention_seconds)
        pipe.zadd(self.index_key, {entry_id: moment.timestamp()})
        if previous is not None and json.loads(previous) != reason:
            pipe.zrem(self.reason_key(json.loads(previous)), entry_id)
        pipe.zadd(self.reason_key(reason), {entry_id: moment.timestamp()})
        pipe.zadd(self.step_key(step), {entry_id: moment.timestamp()})
        if customer_id is not None:
            pipe.sadd(self.customer_key(customer_id), entry_id)
            pipe.expire(self.customer_key(customer_id), self.retention_seconds)
        pipe.hgetall(key)
        pipe.zcard(self.index_key)
        pipe.zrange(self.index_key, 0, 0, withscores=True)
        *_, stored, size, oldest = pipe.execute()
        if size > self.max_entries or (oldest and oldest[0][1] < self._retention_cutoff()):
            self.trim()
        return _decode(stored)

    def get(self, entry_id: str) -> Entry | None:
        stored = cast(dict[str, str], self._redis.hgetall(self.entry_key(entry_id)))
        return _decode(stored) if stored else None

    def list(
        self, *, reason: str | None = None, since: str | None = None, limit: int | None = None,
        step: str | None = None,
    ) -> EntryList:
        """Entries, newest last failure first; ``since`` keeps those failed at or after it."""
        low = parse_iso(since).timestamp() if since is not None else "-inf"
        index = (self.reason_key(reason) if reason is not None
                 else self.step_key(step) if step is not None else self.index_key)
        found: EntryList = []
        for entry in self._entries_newest_first(low, index):
            if (reason is not None and entry["reason"] != reason) or (
                    step is not None and entry["step"] != step):
                continue
            found.append(entry)
            if limit is not None and len(found) >= limit:
                break
        return found

    def remove(self, entry_id: str, *, if_last_failed_at: str | None = None) -> bool:
        """Delete an entry; with ``if_last_failed_at``, only while its last failure is still
        that one. True when something was deleted."""
        expected = "" if if_last_failed_at is None else json.dumps(if_last_failed_at)
        raw_customer = self._remove_if_unchanged(
            keys=[self.index_key, self.entry_key(entry_id)],
            args=[entry_id, expected, f"{self._prefix}:"],
        )
        if raw_customer is None:
            return False
        customer_id = json.loads(raw_customer)
        if customer_id is not None:
            self._redis.srem(self.customer_key(customer_id), entry_id)
        return True

    def for_customer(self, customer_id: str) -> EntryList:
        index = self.customer_key(customer_id)
        entry_ids = sorted(cast(set[str], self._redis.smembers(index)))
        pipe = self._redis.pipeline(transaction=False)
        for entry_id in entry_ids:
            pipe.hgetall(self.entry_key(entry_id))
        entries: EntryList = []
        stale: list[str] = []
        for entry_id, stored in zip(entry_ids, pipe.execute(), strict=True):
            entry = _decode(stored) if stored else None
            if entry is None or entry["customer_id"] != customer_id:
                stale.append(entry_id)
            else:
                entries.append(entry)
        if stale:
            self._redis.srem(index, *stale)
        return sorted(entries, key=lambda entry: entry["last_failed_at"], reverse=True)

    def count(self) -> int:
        return int(self._redis.zcard(self.index_key))

    def dropped_total(self) -> int:
        """How many entries trimming has dropped since the store began."""
        return int(cast(str | None, self._redis.get(self.dropped_key)) or 0)

    def trim(self) -> int:
        """Drop entries past retention, then the oldest beyond ``max_entries``; count the
        drops and log them, so nothing leaves the store unnoticed."""
        expired = self._redis.zrangebyscore(
            self.index_key, "-inf", f"({self._retention_cutoff()}", withscores=True
        )
        by_age = self._drop(cast(ScoredIds, expired))
        self._trim_indexes()
        by_count = 0
        excess = self.count() - self.max_entries
        if excess > 0:
            oldest = self._redis.zrange(self.index_key, 0, excess - 1, withscores=True)
            by_count = self._drop(cast(ScoredIds, oldest))
        if by_age or by_count:
            self._redis.incrby(self.dropped_key, by_age + by_count)
        if by_age:
            logger.warning(
                "dead-letter store dropped %d entries older than its retention of %s",
                by_age, _span(self.retention_seconds),
            )
        if by_count:
            logger.warning(
                "dead-letter store dropped its %d oldest entries to stay within %d entries",
                by_count, self.max_entries,
            )
        return by_age + by_count

    def index_keys(self) -> KeyList:
        return ([self.reason_key(code) for code in reasons.ALL]
                + [self.step_key(step) for step in STEPS])

    def _trim_indexes(self) -> None:
        # An entry whose hash expired before trimming ran cannot name its reason: its
        # index members go by age, like the entry did.
        pipe = self._redis.pipeline(transaction=False)
        for key in self.index_keys():
            pipe.zremrangebyscore(key, "-inf", f"({self._retention_cutoff()}")
        pipe.execute()

    def _retention_cutoff(self) -> float:
        return self._now().timestamp() - self.retention_seconds

    def _drop(self, observed: ScoredIds) -> int:
        dropped = 0
        for start in range(0, len(observed), LIST_PAGE_SIZE):
            batch = observed[start : start + LIST_PAGE_SIZE]
            pipe = self._redis.pipeline(transaction=False)
            for entry_id, score in batch:
                self._drop_if_unchanged(
                    keys=[self.index_key, self.entry_key(entry_id)],
                    args=[entry_id, repr(score), f"{self._prefix}:"],
                    client=pipe,
                )
            cleanup = self._redis.pipeline(transaction=False)
            for (entry_id, _), raw_customer in zip(batch, pipe.execute(), strict=True):
                if raw_customer is None:
                    continue
                dropped += 1
                customer_id = json.loads(raw_customer)
                if customer_id is not None:
                    cleanup.srem(self.customer_key(customer_id), entry_id)
            cleanup.execute()
        return dropped

    def _entries_newest_first(self, low: float | str, index: str) -> Iterator[Entry]:
        offset = 0
        while True:
            entry_ids = cast(
                list[str],
                self._redis.zrevrangebyscore(index, "+inf", low, start=offset,
                                             num=LIST_PAGE_SIZE),
            )
            if not entry_ids:
                return
            pipe = self._redis.pipeline(transaction=False)
            for entry_id in entry_ids:
                pipe.hgetall(self.entry_key(entry_id))
            for stored in pipe.execute():
                if stored:  # an entry can vanish between the two reads
                    yield _decode(stored)
            offset += len(entry_ids)


def _span(seconds: int) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} seconds"


def _entry_id(step: str, customer_id: str | None, transaction_id: str | None) -> str:
    # A transaction's entry is named for the transaction: one customer can have several.
    subject = transaction_id if step == TRANSACTION_STEP else customer_id or transaction_id
    if not subject:
        raise ValueError(f"a {step!r} dead letter needs a customer id or a transaction id")
    return f"{step}:{subject}"


def _decode(stored: dict[str, str]) -> Entry:
    values = {name: json.loads(raw) for name, raw in stored.items()}
    entry = {name: values.get(name) for name in ENTRY_FIELDS}
    entry["errors"] = values.get("errors") or []
    entry["attempts"] = int(values.get("attempts") or 0)
    if values.get("step") == TRANSACTION_STEP:
        entry["transaction_id"] = values.get("transaction_id")
    if values.get("context") is not None:
        entry["context"] = values["context"]
    return entry
