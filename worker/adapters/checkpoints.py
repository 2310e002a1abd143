"""Where a long run (backfill, reconcile) keeps its resume point, in Redis."""

from __future__ import annotations

import json
from typing import Any, cast

import redis

from worker.adapters import keys


class CheckpointStore:
    def __init__(self, client: redis.Redis, prefix: str | None = None) -> None:
        self._redis = client
        self._prefix = keys.key(keys.CHECKPOINTS + ":", prefix)

    def load(self, name: str) -> dict[str, Any] | None:
        raw = cast(str | None, self._redis.get(self._prefix + name))
        return json.loads(raw) if raw else None

    def save(self, name: str, state: dict[str, Any]) -> None:
        self._redis.set(self._prefix + name, json.dumps(state))

    def clear(self, name: str) -> None:
        self._redis.delete(self._prefix + name)
