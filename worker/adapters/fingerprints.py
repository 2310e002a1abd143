"""The fingerprint of the last payload that reached Klaviyo, per customer (one Redis hash)."""

from __future__ import annotations

from typing import cast

import redis

from worker.adapters import keys


class FingerprintStore:
    def __init__(self, client: redis.Redis, prefix: str | None = None) -> None:
        self._redis = client
        self.key = keys.key(keys.FINGERPRINTS, prefix)

    def get(self, customer_id: str) -> str | None:
        return cast(str | None, self._redis.hget(self.key, customer_id))

    def set(self, customer_id: str, value: str) -> None:
        self._redis.hset(self.key, customer_id, value)

    def forget(self, customer_id: str) -> None:
        self._redis.hdel(self.key, customer_id)
