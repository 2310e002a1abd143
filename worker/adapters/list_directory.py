"""List name → Klaviyo list id, resolved once and cached in Redis for the whole fleet.

Klaviyo's list search is paged at 10 and creating lists is limited to 150 a day, so names
are never resolved per customer; the cache expires so a renamed or deleted list is noticed.
"""

from __future__ import annotations

from typing import Protocol

import redis


class _ListApi(Protocol):
    def find_lists(self, name: str) -> list: ...

    def create_list(self, name: str, opt_in_process: str | None = None): ...


class CachedListDirectory:
    def __init__(
        self,
        client: redis.Redis,
        klaviyo: _ListApi,
        *,
        create_missing: bool = False,
        prefix: str = "ipk",
        ttl_seconds: int = 3600,
    ) -> None:
        self._redis = client
        self._klaviyo = klaviyo
        self._create_missing = create_missing
        self._key = f"{prefix}:lists"
        self._ttl = ttl_seconds

    def list_id(self, name: str) -> str | None:
        cached = self._redis.hget(self._key, name)
        if cached:
            return str(cached)
        matches = self._klaviyo.find_lists(name)
        if matches:
            list_id = matches[0].id
        elif self._create_missing:
            list_id = self._klaviyo.create_list(name).id
        else:
            return None
        pipe = self._redis.pipeline()
        pipe.hset(self._key, name, list_id)
        pipe.expire(self._key, self._ttl)
        pipe.execute()
        return str(list_id)

    def forget(self) -> None:
        self._redis.delete(self._key)
