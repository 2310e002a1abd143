"""Filtered, counted pages of the dead-letter store, for the operator console.

A page never loads the whole store: one filter (reason or step) pages its own sorted set
(``dlq:by_reason:{code}``, ``dlq:by_step:{step}``, kept by DeadLetterStore) with an offset,
no filter pages ``dlq:by_time``; reason and step together page the reason's ids and keep
those whose id starts with the step (an entry id is ``{step}:{subject}``), reading entry
hashes only for the page shown.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import cast

from worker.adapters.dead_letters import (
    LIST_PAGE_SIZE,
    STEPS,
    DeadLetterStore,
    Entry,
    _decode,
    parse_iso,
)
from worker.core import reasons


@dataclass(frozen=True)
class Filter:
    reason: str | None = None
    step: str | None = None
    since: str | None = None  # ISO-8601 UTC: entries last failed at or after it

    def __post_init__(self) -> None:
        if self.reason is not None and self.reason not in reasons.ALL:
            raise ValueError(f"unknown reason code {self.reason!r}")
        if self.step is not None and self.step not in STEPS:
            raise ValueError(f"unknown step {self.step!r}")
        if self.since is not None:
            parse_iso(self.since)  # raises ValueError when malformed


class DeadLetterPages:
    def __init__(self, store: DeadLetterStore) -> None:
        self.store = store
        self._redis = store._redis
        self.indexed_key = f"{store.index_key.rsplit(':', 1)[0]}:indexed"

    def ensure_indexed(self) -> int:
        """Put entries recorded before the reason and step indexes existed into them, once,
        a page of ids at a time; returns how many entries were looked at (0: already done)."""
        if self._redis.get(self.indexed_key):
            return 0
        seen, offset = 0, 0
        while True:
            scored = cast(list[tuple[str, float]], self._redis.zrange(
                self.store.index_key, offset, offset + LIST_PAGE_SIZE - 1, withscores=True))
            if not scored:
                break
            offset += len(scored)
            read = self._redis.pipeline(transaction=False)
            for entry_id, _ in scored:
                read.hget(self.store.entry_key(entry_id), "reason")
            write = self._redis.pipeline(transaction=False)
            for (entry_id, score), reason in zip(scored, read.execute(), strict=True):
                if reason is None:  # gone since: nothing to index
                    continue
                seen += 1
                write.zadd(self.store.reason_key(json.loads(reason)), {entry_id: score})
                write.zadd(self.store.step_key(entry_id.split(":", 1)[0]), {entry_id: score})
            write.execute()
        self._redis.set(self.indexed_key, "1")
        return seen

    def count(self, flt: Filter) -> int:
        low = _low(flt)
        if flt.reason is not None and flt.step is not None:
            return len(self._both_ids(flt, low))
        return int(cast(int, self._redis.zcount(self._index(flt), low, "+inf")))

    def page(self, flt: Filter, offset: int, limit: int) -> list[Entry]:
        """Entries ``offset`` to ``offset + limit`` of the filter, newest first."""
        if offset < 0 or limit < 1:
            return []
        low = _low(flt)
        if flt.reason is not None and flt.step is not None:
            ids = self._both_ids(flt, low)[offset:offset + limit]
        else:
            ids = cast(list[str], self._redis.zrevrangebyscore(
                self._index(flt), "+inf", low, start=offset, num=limit))
        return self._entries(ids)

    def counts_by_reason(self) -> dict[str, int]:
        return self._counts({code: self.store.reason_key(code) for code in reasons.ALL})

    def counts_by_step(self) -> dict[str, int]:
        return self._counts({step: self.store.step_key(step) for step in STEPS})

    def _counts(self, keys: dict[str, str]) -> dict[str, int]:
        pipe = self._redis.pipeline(transaction=False)
        for key in keys.values():
            pipe.zcard(key)
        counted = zip(keys, pipe.execute(), strict=True)
        return {name: int(n) for name, n in counted if n}

    def _index(self, flt: Filter) -> str:
        if flt.reason is not None:
            return self.store.reason_key(flt.reason)
        if flt.step is not None:
            return self.store.step_key(flt.step)
        return self.store.index_key

    def _both_ids(self, flt: Filter, low: float | str) -> list[str]:
        prefix = f"{flt.step}:"
        found: list[str] = []
        offset = 0
        while True:
            ids = cast(list[str], self._redis.zrevrangebyscore(
                self.store.reason_key(cast(str, flt.reason)), "+inf", low,
                start=offset, num=LIST_PAGE_SIZE * 10))
            if not ids:
                return found
            found += [i for i in ids if i.startswith(prefix)]
            offset += len(ids)

    def _entries(self, ids: list[str]) -> list[Entry]:
        pipe = self._redis.pipeline(transaction=False)
        for entry_id in ids:
            pipe.hgetall(self.store.entry_key(entry_id))
        return [_decode(stored) for stored in pipe.execute() if stored]


def _low(flt: Filter) -> float | str:
    return parse_iso(flt.since).timestamp() if flt.since is not None else "-inf"

