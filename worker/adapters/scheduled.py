"""The scheduled set: steps waiting out a retry (or a delay) in Redis, never in a worker.

A task that must retry is acknowledged, and its next run is written here first: the Celery
message it will be (built by worker/adapters/broker.py, same task id), due at a time, with
what an operator needs to see (step, attempt n of N, last error). Any worker's mover
(worker/tasks/scheduled_mover.py) pushes due entries onto their queue in one Lua call, so two
workers never both take one, and no crash between "taken" and "queued" exists. A worker killed
while a retry waits loses nothing: the retry was never in it.

Layout under ``{prefix}:scheduled``: a sorted set task id → due time; ``…:entries``, a hash
task id → JSON (queue, message, and the operator's fields; ids and codes only); and
``…:subjects``, a hash ``{step}:{record id}`` → task id of that step's waiting retry, for
``status`` and for replay (which runs a waiting retry now instead of a second copy).

A retry's task-ledger entry (worker/adapters/task_ledger.py) is rewritten in the same call
with the retry's arguments, due after the retry is; when the mover queues the message it
moves the ledger's due time to "now plus the lost-task grace", as for any sent step.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, cast

import redis

from worker.adapters import keys
from worker.adapters.task_ledger import LedgerEntry, TaskLedger

# KEYS: set, entries, subjects, ledger hash, ledger due set.
# ARGV: task id, due, entry JSON, subject or '', ledger entry JSON or '', ledger due.
_SCHEDULE = """
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[3], ARGV[4], ARGV[1]) end
if ARGV[5] ~= '' then
  redis.call('HSET', KEYS[4], ARGV[1], ARGV[5])
  redis.call('ZADD', KEYS[5], ARGV[6], ARGV[1])
end
return 1
"""

# KEYS: set, entries, subjects, ledger hash, ledger due set. ARGV: now, limit, ledger due.
# The queue list is named inside each entry (a single Redis, not a cluster: see README).
_MOVE_DUE = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
local moved = 0
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  local raw = redis.call('HGET', KEYS[2], id)
  redis.call('HDEL', KEYS[2], id)
  if raw then
    local entry = cjson.decode(raw)
    redis.call('LPUSH', entry['queue'], entry['message'])
    local subject = entry['subject']
    if subject and subject ~= '' and redis.call('HGET', KEYS[3], subject) == id then
      redis.call('HDEL', KEYS[3], subject)
    end
    if redis.call('HEXISTS', KEYS[4], id) == 1 then
      redis.call('ZADD', KEYS[5], ARGV[3], id)
    end
    moved = moved + 1
  end
end
return moved
"""

# KEYS: set, subjects. ARGV: subject, now. Returns the task id made due now, or false.
_RUN_NOW = """
local id = redis.call('HGET', KEYS[2], ARGV[1])
if not id then return false end
if not redis.call('ZSCORE', KEYS[1], id) then return false end
redis.call('ZADD', KEYS[1], ARGV[2], id)
return id
"""


@dataclass(frozen=True)
class Waiting:
    """What an operator sees of a step waiting in the scheduled set."""

    task_id: str
    task: str
    step: str
    subject: str  # "{step}:{record id}"; "" for a delayed send that is not a retry
    due_at: float
    attempt: int  # the attempt the retry will be (1-based)
    max_attempts: int
    last_error: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def subject_of(step: str, record_id: str) -> str:
    return f"{step}:{record_id}"


class ScheduledSteps:
    def __init__(self, client: redis.Redis, prefix: str | None = None) -> None:
        self._redis = client
        self.key = keys.key(keys.SCHEDULED, prefix)
        self.entries_key = f"{self.key}:entries"
        self.subjects_key = f"{self.key}:subjects"
        self._ledger = TaskLedger(client, prefix)
        self._schedule = client.register_script(_SCHEDULE)
        self._move_due = client.register_script(_MOVE_DUE)
        self._run_now = client.register_script(_RUN_NOW)

    def _keys(self) -> list[str]:
        return [self.key, self.entries_key, self.subjects_key, self._ledger.key,
                self._ledger.due_key]

    def schedule(self, task_id: str, queue: str, message: str, due_at: float, *,
                 waiting: Waiting | None = None, ledger: LedgerEntry | None = None,
                 ledger_due_at: float = 0.0) -> None:
        """Write the message to be queued at ``due_at``; with ``waiting``, what an operator
        sees of it (a retry); with ``ledger``, the step's ledger entry, due at
        ``ledger_due_at``, in the same atomic call."""
        entry: dict[str, Any] = {"queue": queue, "message": message}
        if waiting is not None:
            entry.update(waiting.as_dict())
        self._schedule(keys=self._keys(), args=[
            task_id, due_at, json.dumps(entry), waiting.subject if waiting else "",
            ledger.encode() if ledger else "", ledger_due_at])

    def move_due(self, now: float, ledger_due_at: float, limit: int = 500) -> int:
        """Queue every entry due by ``now`` (at most ``limit`` in one atomic call); returns
        how many were queued. Their ledger entries become due at ``ledger_due_at``."""
        return int(cast(int, self._move_due(keys=self._keys(), args=[now, limit,
                                                                    ledger_due_at])))

    def run_now(self, step: str, record_id: str, now: float) -> str | None:
        """Make the step's waiting retry due now; its task id, or None when none waits."""
        found = self._run_now(keys=[self.key, self.subjects_key],
                              args=[subject_of(step, record_id), now])
        return str(found) if found else None

    def waiting(self, step: str, record_id: str) -> Waiting | None:
        task_id = cast(str | None, self._redis.hget(self.subjects_key,
                                                    subject_of(step, record_id)))
        if not task_id:
            return None
        raw = cast(str | None, self._redis.hget(self.entries_key, task_id))
        if raw is None:
            return None
        data = json.loads(raw)
        return Waiting(task_id=task_id, task=str(data.get("task", "")),
                       step=str(data.get("step", step)), subject=str(data.get("subject", "")),
                       due_at=float(data.get("due_at", 0.0)),
                       attempt=int(data.get("attempt", 0)),
                       max_attempts=int(data.get("max_attempts", 0)),
                       last_error=str(data.get("last_error", "")))

    def held(self, task_ids: list[str]) -> set[str]:
        """Which of ``task_ids`` wait here."""
        if not task_ids:
            return set()
        pipe = self._redis.pipeline(transaction=False)
        for task_id in task_ids:
            pipe.zscore(self.key, task_id)
        return {t for t, score in zip(task_ids, pipe.execute(), strict=True)
                if score is not None}

    def retrying(self) -> int:
        """Steps (and subscription batches) waiting to retry."""
        return int(cast(int, self._redis.hlen(self.subjects_key)))

    def size(self) -> int:
        """Everything waiting: retries and delayed sends."""
        return int(cast(int, self._redis.zcard(self.key)))

    def next_due(self) -> float | None:
        first = cast(list[tuple[str, float]], self._redis.zrange(self.key, 0, 0,
                                                                 withscores=True))
        return float(first[0][1]) if first else None
