"""What the console reads and acts through: the CLI's own stores and services, built once.

Nothing here talks to Redis itself; every read is a store's method (worker/adapters) and
every action the CLI's (worker/services/replay.py with worker/tasks/replay.py,
producers/manual_sync.py, producers/dry_run.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import redis

from producers.dry_run import NEW_PROFILE, dry_run
from producers.manual_sync import enqueue_customer
from worker import bootstrap
from worker.adapters.admin_auth import AdminSessions, LoginLockout
from worker.adapters.dead_letter_pages import DeadLetterPages
from worker.adapters.dead_letters import DeadLetterStore
from worker.adapters.history import HistoryStore
from worker.adapters.links import LinkStore
from worker.adapters.metrics import Metrics
from worker.adapters.rate_limiter import RedisRateLimiter, account_id
from worker.adapters.scheduled import ScheduledSteps
from worker.adapters.stores import CheckpointStore, WatermarkStore
from worker.adapters.task_ledger import TaskLedger
from worker.adapters.tombstones import Tombstones
from worker.bootstrap import Container
from worker.config import Settings
from worker.core.rate_limits import effective_limits, parse_limits
from worker.tasks.replay import enqueue_replay

Entry = dict[str, Any]


def enqueue_sync(customer_id: str) -> str:
    """``sync`` of one customer (a forced send, as an operator asking means it); task id."""
    return str(enqueue_customer(customer_id, force=True).id)


@lru_cache(maxsize=2)
def _container(settings: Settings) -> Container:
    # Built on the first preview: the rest of the console needs no API credentials.
    return bootstrap.build(settings)


def preview(settings: Settings, customer_id: str
            ) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(the dry run's report, the live Klaviyo profile or None): `sync --dry-run` and one
    ``GET /api/profiles/{id}`` of the linked (or dry-run-found) profile."""
    c = _container(settings)
    report = dry_run(customer_id, c)
    profile_id = (report["steps"].get("profile") or {}).get("profile_id") \
        or c.links.get(customer_id)
    if not profile_id or profile_id == NEW_PROFILE:
        return report, None
    return report, c.klaviyo.get_profile(str(profile_id))


@dataclass
class ConsoleServices:
    settings: Settings
    redis: redis.Redis
    dead_letters: DeadLetterStore
    pages: DeadLetterPages
    history: HistoryStore
    links: LinkStore
    scheduled: ScheduledSteps
    ledger: TaskLedger
    metrics: Metrics
    watermarks: WatermarkStore
    checkpoints: CheckpointStore
    limiter: RedisRateLimiter
    sessions: AdminSessions
    lockout: LoginLockout
    tombstones: Tombstones
    enqueue_replay: Callable[[Entry], str] = field(default=enqueue_replay)
    enqueue_sync: Callable[[str], str] = field(default=enqueue_sync)

    def preview(self, customer_id: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
        return preview(self.settings, customer_id)

    @classmethod
    def from_settings(cls, settings: Settings) -> ConsoleServices:
        client = bootstrap.redis_client(settings)
        dead_letters = DeadLetterStore(
            client,
            retention_seconds=int(settings.dead_letter_retention_days * 86400),
            max_entries=settings.dead_letter_max_entries,
        )
        limiter = RedisRateLimiter(
            client, account_id(settings.klaviyo_api_key.value),
            effective_limits(parse_limits(settings.klaviyo_rate_limits)))
        return cls(
            settings=settings, redis=client, dead_letters=dead_letters,
            pages=DeadLetterPages(dead_letters), history=HistoryStore(client),
            links=LinkStore(client), scheduled=ScheduledSteps(client),
            ledger=TaskLedger(client), metrics=Metrics(client),
            watermarks=WatermarkStore(client), checkpoints=CheckpointStore(client),
            limiter=limiter, sessions=AdminSessions(client), lockout=LoginLockout(client),
            tombstones=Tombstones(client),
        )
