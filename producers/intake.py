"""Putting parsed notifications on the queue: one atomic claim-and-push per record.

The hot path skips kombu's publish (it builds a new Redis client per message and, with sent
events on, publishes twice): Celery itself builds each task message, this module wraps it in
the Redis transport's envelope, and ``PendingSyncs.claim_and_push`` claims the record and
LPUSHes the message in one Lua call, all notifications of a webhook in one round trip.
tests/integration/test_receiver*.py prove a real worker consumes these messages.

Redis is reached with short timeouts and without client-side retries, so a Redis that is down
turns into a fast 503 (iPaaS.com delivers again later) instead of a hung request.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from producers.webhook_parsing import CUSTOMER_DELETED, TRANSACTION, SyncRequest
from worker import bootstrap
from worker.adapters.pending import PendingSyncs, QueuedSync, SyncMessages
from worker.adapters.tombstones import WEBHOOK, Tombstones

CONNECT_TIMEOUT_SECONDS = 0.5
SOCKET_TIMEOUT_SECONDS = 2.0
# Records claimed per round trip. A body at the size limit can hold ~30,000 notifications of
# ~2 KB task messages each: built and sent all at once, that is tens of megabytes in memory.
SUBMIT_BATCH = 1000

logger = logging.getLogger("ipaas_klaviyo.receiver")


class QueueUnavailable(Exception):
    """Redis could not take the work; nothing unstored was acknowledged."""


@dataclass
class SubmitResult:
    enqueued_ids: list[str] = field(default_factory=list)
    coalesced: int = 0
    ignored: int = 0  # transactions while GENERATE_EVENTS is off: acknowledged, not queued


class TaskMessages(SyncMessages):
    """The receiver's notifications as queued syncs (worker/adapters/pending.py)."""

    def build(self, request: SyncRequest) -> QueuedSync:
        return self.sync(request.kind, request.record_id, request.tracking_guid)


class Intake:
    def __init__(self, client: redis.Redis, messages: TaskMessages, *,
                 generate_events: bool = True) -> None:
        self.redis = client
        self.generate_events = generate_events
        self.pending = PendingSyncs(client)
        self.tombstones = Tombstones(client)
        self.messages = messages

    def submit(self, requests: Sequence[SyncRequest]) -> SubmitResult:
        """Enqueue one sync per record not already pending. Raises QueueUnavailable when
        Redis cannot take the work; every record is then either fully enqueued (and
        claimed) or untouched, so the redelivery the 503 asks for loses nothing."""
        ignored = 0
        if not self.generate_events:
            wanted = [r for r in requests if r.kind != TRANSACTION]
            ignored, requests = len(requests) - len(wanted), wanted
        if not requests:
            return SubmitResult(ignored=ignored)
        pushed: list[bool] = []
        for start in range(0, len(requests), SUBMIT_BATCH):
            batch = requests[start:start + SUBMIT_BATCH]
            syncs = [self.messages.build(r) for r in batch]
            try:
                # Deleted customers are tombstoned before anything is queued: from here on
                # no sync touches them, even one already waiting in the queue.
                self.tombstones.add_many(
                    [r.record_id for r in batch if r.kind == CUSTOMER_DELETED], WEBHOOK)
                pushed += self.pending.claim_and_push(syncs)
            except redis.RedisError as exc:
                # Batches already sent stay claimed and queued: the redelivery the 503 asks
                # for coalesces them.
                logger.warning("enqueue failed: %s", type(exc).__name__)
                raise QueueUnavailable(type(exc).__name__) from None
        enqueued = [r.record_id for r, done in zip(requests, pushed, strict=True) if done]
        return SubmitResult(enqueued_ids=enqueued, coalesced=len(requests) - len(enqueued),
                            ignored=ignored)

    def redis_answers(self) -> bool:
        try:
            return bool(self.redis.ping())
        except redis.RedisError:
            return False


def redis_client(redis_url: str, **overrides: Any) -> redis.Redis:
    options: dict[str, Any] = {
        "decode_responses": True,
        "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "socket_timeout": SOCKET_TIMEOUT_SECONDS,
        "retry": Retry(NoBackoff(), 0),
        "health_check_interval": 30,
    }
    options.update(overrides)
    return redis.Redis.from_url(redis_url, **options)


def build_intake(redis_url: str, generate_events: bool | None = None) -> Intake:
    """``generate_events`` None: GENERATE_EVENTS from the environment."""
    settings = bootstrap.settings()
    if generate_events is None:
        generate_events = settings.generate_events
    return Intake(redis_client(redis_url), TaskMessages(settings.lost_task_after_seconds),
                  generate_events=generate_events)
