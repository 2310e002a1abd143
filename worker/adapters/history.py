"""Recent sync history per customer, for ``status`` and the admin shell.

Each customer has one Redis list, ``{prefix}:history:{customer id}``, newest entry first,
cut to ``keep`` entries and expiring ``ttl_seconds`` after the last write, so the store stays
bounded however many customers pass through. Entries carry outcomes and reason codes only.
"""

from __future__ import annotations

import json
from typing import Any, cast

import redis

from worker.adapters import keys
from worker.adapters.dead_letters import Clock, iso_utc, utc_now
from worker.adapters.links import require_decoded
from worker.core.errors import StepOutcome


class HistoryStore:
    def __init__(
        self,
        client: redis.Redis,
        prefix: str | None = None,
        *,
        keep: int = 50,
        ttl_seconds: int = 30 * 86400,
        now: Clock = utc_now,
    ) -> None:
        if keep < 1:
            raise ValueError("keep must be at least 1")
        require_decoded(client)
        self._redis = client
        self._prefix = keys.key(keys.HISTORY, prefix)
        self.keep = keep
        self.ttl_seconds = ttl_seconds
        self._now = now

    def key(self, customer_id: str) -> str:
        return f"{self._prefix}:{customer_id}"

    def record(
        self,
        customer_id: str,
        outcome: StepOutcome,
        *,
        tracking_guid: str | None = None,
        duration_ms: float | None = None,
        via: str | None = None,
    ) -> None:
        entry: dict[str, object] = {
            "at": iso_utc(self._now()),
            "step": outcome.step,
            "outcome": outcome.outcome,
            "reason": outcome.reason,
            "profile_id": outcome.profile_id,
            "tracking_guid": tracking_guid,
            "duration_ms": None if duration_ms is None else round(duration_ms, 1),
        }
        if via:  # "bulk": settled by a burst-mode batch
            entry["via"] = via
        key = self.key(customer_id)
        pipe = self._redis.pipeline(transaction=True)
        pipe.lpush(key, json.dumps(entry))
        pipe.ltrim(key, 0, self.keep - 1)
        pipe.expire(key, self.ttl_seconds)
        pipe.execute()

    def recent(self, customer_id: str, limit: int = 20) -> list[dict[str, Any]]:
        """Newest first."""
        if limit < 1:
            return []
        raw_entries = cast(list[str], self._redis.lrange(self.key(customer_id), 0, limit - 1))
        return [json.loads(raw) for raw in raw_entries]
