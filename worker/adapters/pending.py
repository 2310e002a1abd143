"""Which syncs are queued and not yet started, so duplicate webhooks coalesce.

One key per record, ``{prefix}:pending:{kind}:{id}``. A producer *claims* the key (SET NX)
before it enqueues and enqueues only when the claim is new; the task deletes the key as it
*starts*. A notification that arrives while the sync waits in the queue therefore adds
nothing (the queued sync will read the latest data anyway), and one that arrives after the
sync started enqueues again, so the last change always wins.

The TTL bounds the damage of a marker whose task was lost (a purged queue, a crash between
claim and enqueue): for at most that long, notifications for the record coalesce into
nothing. An hour is far longer than a healthy queue's wait and short enough to self-heal.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import redis
from redis.exceptions import NoScriptError

from worker.adapters import keys
from worker.adapters.broker import TaskMessages, queue_key
from worker.adapters.task_ledger import LedgerEntry, TaskLedger

CUSTOMER = "customer"
TRANSACTION = "transaction"
CUSTOMER_DELETED = "customer_deleted"
DEFAULT_TTL_SECONDS = 3600

logger = logging.getLogger("ipaas_klaviyo.pending")

# Claim and enqueue as one atomic step: either the marker is new and the message is in the
# queue, or neither happened, so no failure can leave a claim that swallows redeliveries.
# The message's task-ledger entry (adapters/task_ledger.py) is written in the same step.
# KEYS: marker, queue, ledger hash, ledger due set. ARGV: TTL, message, task id, entry, due.
_CLAIM_AND_PUSH = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  redis.call('LPUSH', KEYS[2], ARGV[2])
  if ARGV[3] ~= '' then
    redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
    redis.call('ZADD', KEYS[4], ARGV[5], ARGV[3])
  end
  return 1
end
return 0
"""


@dataclass(frozen=True)
class QueuedSync:
    """A record to claim and, when the claim is new, the message to push on a queue list
    (with its task's ledger entry, when ``task_id`` is set)."""

    kind: str
    record_id: str
    queue: str
    message: str
    task_id: str = ""
    ledger_entry: str = ""
    due_at: float = 0.0


# Kind of record → (Celery task name, keyword that carries the record id).
TASKS: dict[str, tuple[str, str]] = {
    CUSTOMER: ("ipaas_klaviyo.sync_customer", "customer_id"),
    TRANSACTION: ("ipaas_klaviyo.sync_transaction", "transaction_id"),
    CUSTOMER_DELETED: ("ipaas_klaviyo.forget_customer", "customer_id"),
}


class SyncMessages:
    """Syncs as messages ready for ``claim_and_push`` (the receiver's and reconcile's): the
    task message (worker/adapters/broker.py) with its task-ledger entry. ``ignore_result``:
    nobody waits on these tasks (their outcome goes to the history store)."""

    def __init__(self, lost_task_after_seconds: float = 300.0) -> None:
        self._messages = TaskMessages()
        # When the lost-task sweep starts looking for a message nobody finished.
        self.lost_task_after_seconds = lost_task_after_seconds

    def sync(self, kind: str, record_id: str, tracking_guid: str | None) -> QueuedSync:
        task_name, id_keyword = TASKS[kind]
        kwargs = {id_keyword: record_id, "tracking_guid": tracking_guid}
        task_id, queue, message = self._messages.build(task_name, kwargs, ignore_result=True)
        entry = LedgerEntry(task_name, queue, kwargs)
        return QueuedSync(kind, record_id, queue_key(queue), message, task_id=task_id,
                          ledger_entry=entry.encode(),
                          due_at=time.time() + self.lost_task_after_seconds)


class PendingSyncs:
    def __init__(
        self, client: redis.Redis, prefix: str | None = None, ttl_seconds: int = DEFAULT_TTL_SECONDS
    ) -> None:
        self._redis = client
        self._prefix = keys.key(keys.PENDING, prefix)
        self.ttl_seconds = ttl_seconds
        self._script_sha = hashlib.sha1(_CLAIM_AND_PUSH.encode()).hexdigest()
        self._ledger = TaskLedger(client, prefix)

    def key(self, kind: str, record_id: str) -> str:
        return f"{self._prefix}:{kind}:{record_id}"

    def claim(self, kind: str, record_id: str) -> bool:
        """True when no sync of this record was pending: the caller must enqueue one."""
        return bool(self._redis.set(self.key(kind, record_id), "1", nx=True, ex=self.ttl_seconds))

    def claim_and_push(self, syncs: Sequence[QueuedSync]) -> list[bool]:
        """For each sync, in order and in one round trip: claim the record and, only if the
        claim is new, LPUSH its message onto its queue (atomically). True where pushed."""
        if not syncs:
            return []
        try:
            return self._claim_and_push_once(syncs)
        except NoScriptError:
            # Redis restarted or its script cache was flushed since the last load. A missing
            # script fails every call in the pipeline, so none of them ran: run them again.
            self._redis.script_load(_CLAIM_AND_PUSH)
            return self._claim_and_push_once(syncs)

    def _claim_and_push_once(self, syncs: Sequence[QueuedSync]) -> list[bool]:
        # EVALSHA straight into the pipeline: redis-py's Script objects would add a
        # SCRIPT EXISTS round trip to every pipeline.
        pipe = self._redis.pipeline(transaction=False)
        for sync in syncs:
            pipe.evalsha(self._script_sha, 4, self.key(sync.kind, sync.record_id), sync.queue,
                         self._ledger.key, self._ledger.due_key, self.ttl_seconds,
                         sync.message, sync.task_id, sync.ledger_entry, sync.due_at)
        return [bool(pushed) for pushed in pipe.execute()]

    def release(self, kind: str, record_id: str) -> None:
        """Give a claim back when the enqueue it guarded failed, so nothing is swallowed."""
        self._redis.delete(self.key(kind, record_id))

    def started(self, kind: str, record_id: str) -> None:
        """Called by the task as it starts: later notifications must enqueue a fresh sync.

        Best effort: the task is already running, and failing it here would lose this sync
        for certain, while a marker left behind only coalesces notifications until its TTL.
        """
        try:
            self._redis.delete(self.key(kind, record_id))
        except redis.RedisError as exc:
            logger.warning(
                "could not clear the pending marker of %s %s: %s", kind, record_id,
                type(exc).__name__,
            )

    def is_pending(self, kind: str, record_id: str) -> bool:
        return bool(self._redis.exists(self.key(kind, record_id)))
