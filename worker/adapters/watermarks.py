"""How far reconciliation has looked, per kind of record: one Redis string per kind."""

from __future__ import annotations

from datetime import datetime
from typing import cast

import redis

from worker.adapters import keys
from worker.core.reconcile import format_time, parse_time


class WatermarkStore:
    def __init__(self, client: redis.Redis, prefix: str | None = None) -> None:
        self._redis = client
        self._prefix = keys.key(keys.WATERMARKS + ":", prefix)

    def get(self, kind: str) -> datetime | None:
        return parse_time(cast(str | None, self._redis.get(self._prefix + kind)))

    def set(self, kind: str, moment: datetime) -> None:
        self._redis.set(self._prefix + kind, format_time(moment))

    def clear(self, kind: str) -> None:
        self._redis.delete(self._prefix + kind)
