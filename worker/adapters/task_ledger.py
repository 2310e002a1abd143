"""The ledger of sent tasks not yet finished: the safety net under the broker.

Celery's Redis transport takes a message off its queue (BRPOP) and only then writes it to
its ``unacked`` hash; a worker killed between the two loses the message for good, whatever
``acks_late`` says (kombu issues #305, #1836). Every customer and transaction step is
therefore written here *before* its message is sent, and struck off only when the step
reached an outcome (done, rejected or dead-lettered). An entry that stays open past its due
time is looked for in the queues and the ``unacked`` hash by the lost-task sweep
(worker/tasks/lost_tasks.py), and its task is sent again, with the same id, when it is in neither.

Layout under ``{prefix}:ledger``: a hash task id → JSON ``{"task", "queue", "kwargs",
"resent"}`` (ids only, never personal data) and a sorted set ``{prefix}:ledger:due`` task id →
the time after which an open entry is looked for.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import redis

from worker.adapters import keys

# KEYS: hash, due set. ARGV: task id, due time, new entry JSON or ''.
# Only an entry still open is postponed: one that finished meanwhile stays finished.
_POSTPONE = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
"""


@dataclass(frozen=True)
class LedgerEntry:
    """A sent task: enough to send it again (name, queue, keyword arguments)."""

    task: str
    queue: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    resent: int = 0  # how many times the sweep sent it again

    def encode(self) -> str:
        return json.dumps({"task": self.task, "queue": self.queue, "kwargs": self.kwargs,
                           "resent": self.resent}, sort_keys=True)

    @classmethod
    def decode(cls, raw: str) -> LedgerEntry:
        data = json.loads(raw)
        return cls(str(data["task"]), str(data["queue"]), dict(data.get("kwargs") or {}),
                   int(data.get("resent") or 0))


class TaskLedger:
    def __init__(self, client: redis.Redis, prefix: str | None = None, *,
                 now: Callable[[], float] | None = None) -> None:
        self._redis = client
        self.key = keys.key(keys.LEDGER, prefix)
        self.due_key = f"{self.key}:due"
        self._now = now or time.time
        self._postpone = client.register_script(_POSTPONE)

    def record(self, task_id: str, entry: LedgerEntry, due_at: float) -> None:
        """Before the task is sent: an entry without a message is found by the sweep and
        sent; a message without an entry would have no safety net."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(self.key, task_id, entry.encode())
        pipe.zadd(self.due_key, {task_id: due_at})
        pipe.execute()

    def postpone(self, task_id: str, due_at: float, entry: LedgerEntry | None = None) -> bool:
        """Look for the task again at ``due_at`` (a retry waiting for its countdown, a task
        still queued), optionally with a new entry (the retry's arguments). False when the
        entry is no longer open."""
        args: list[str | float] = [task_id, due_at, entry.encode() if entry else ""]
        return bool(self._postpone(keys=[self.key, self.due_key], args=args))

    def finish(self, task_id: str | None) -> None:
        """The task reached an outcome: nothing is left to look for."""
        if not task_id:
            return
        pipe = self._redis.pipeline(transaction=True)
        pipe.hdel(self.key, task_id)
        pipe.zrem(self.due_key, task_id)
        pipe.execute()

    def get(self, task_id: str) -> LedgerEntry | None:
        raw = cast(str | None, self._redis.hget(self.key, task_id))
        return LedgerEntry.decode(raw) if raw else None

    def due(self, limit: int = 500) -> list[tuple[str, LedgerEntry]]:
        """Open entries whose due time has passed, oldest first."""
        ids = cast(list[str], self._redis.zrangebyscore(self.due_key, "-inf", self._now(),
                                                        start=0, num=limit))
        if not ids:
            return []
        raws = cast(list[str | None], self._redis.hmget(self.key, ids))
        found: list[tuple[str, LedgerEntry]] = []
        orphans: list[str] = []
        for task_id, raw in zip(ids, raws, strict=True):
            if raw is None:
                orphans.append(task_id)  # finished between the two reads
            else:
                found.append((task_id, LedgerEntry.decode(raw)))
        if orphans:
            self._redis.zrem(self.due_key, *orphans)
        return found

    def open_count(self) -> int:
        return int(cast(int, self._redis.hlen(self.key)))
