"""Which Klaviyo profile belongs to which iPaaS.com customer.

One Redis hash, ``{prefix}:links``, maps customer id to profile id, so a lookup of many
customers is a single HMGET.
"""

from __future__ import annotations

from typing import cast

import redis


def require_decoded(client: redis.Redis) -> None:
    """The stores work with ``str``; a client returning ``bytes`` is a wiring mistake."""
    if not client.connection_pool.connection_kwargs.get("decode_responses"):
        raise ValueError("the stores need a redis client created with decode_responses=True")


class LinkStore:
    def __init__(self, client: redis.Redis, prefix: str = "ipk") -> None:
        require_decoded(client)
        self._redis = client
        self.key = f"{prefix}:links"

    def get(self, customer_id: str) -> str | None:
        return cast(str | None, self._redis.hget(self.key, customer_id))

    def set(self, customer_id: str, profile_id: str) -> None:
        self._redis.hset(self.key, customer_id, profile_id)

    def delete(self, customer_id: str) -> None:
        self._redis.hdel(self.key, customer_id)

    def get_many(self, customer_ids: list[str]) -> dict[str, str | None]:
        if not customer_ids:
            return {}
        profile_ids = cast(list[str | None], self._redis.hmget(self.key, customer_ids))
        return dict(zip(customer_ids, profile_ids, strict=True))

    def count(self) -> int:
        return int(self._redis.hlen(self.key))
