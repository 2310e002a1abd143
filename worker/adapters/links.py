"""Which Klaviyo profile belongs to which iPaaS.com customer.

One Redis hash, ``{prefix}:links``, maps customer id to profile id, so a lookup of many
customers is a single HMGET. A link not yet written back to iPaaS.com's external-id table
(the backfill stores links faster than iPaaS.com takes them) is kept with a ``~`` prefix:
``lookup`` reports it as unconfirmed and the next sync or write-back task confirms it.
"""

from __future__ import annotations

from typing import cast

import redis

from worker.adapters import keys

UNCONFIRMED = "~"


def _decode(raw: str | None) -> tuple[str | None, bool]:
    if raw is None:
        return None, False
    if raw.startswith(UNCONFIRMED):
        return raw[len(UNCONFIRMED):], False
    return raw, True


def require_decoded(client: redis.Redis) -> None:
    """The stores work with ``str``; a client returning ``bytes`` is a wiring mistake."""
    if not client.connection_pool.connection_kwargs.get("decode_responses"):
        raise ValueError("the stores need a redis client created with decode_responses=True")


class LinkStore:
    def __init__(self, client: redis.Redis, prefix: str | None = None) -> None:
        require_decoded(client)
        self._redis = client
        self.key = keys.key(keys.LINKS, prefix)

    def get(self, customer_id: str) -> str | None:
        return self.lookup(customer_id)[0]

    def lookup(self, customer_id: str) -> tuple[str | None, bool]:
        """(profile id or None, whether iPaaS.com is known to hold the same link)."""
        return _decode(cast(str | None, self._redis.hget(self.key, customer_id)))

    def set(self, customer_id: str, profile_id: str, *, confirmed: bool = True) -> None:
        value = profile_id if confirmed else UNCONFIRMED + profile_id
        self._redis.hset(self.key, customer_id, value)

    def set_many(self, links: dict[str, str], *, confirmed: bool = True) -> None:
        if links:
            prefix = "" if confirmed else UNCONFIRMED
            self._redis.hset(self.key, mapping={c: prefix + p for c, p in links.items()})

    def delete(self, customer_id: str) -> None:
        self._redis.hdel(self.key, customer_id)

    def get_many(self, customer_ids: list[str]) -> dict[str, str | None]:
        if not customer_ids:
            return {}
        profile_ids = cast(list[str | None], self._redis.hmget(self.key, customer_ids))
        return {c: _decode(p)[0] for c, p in zip(customer_ids, profile_ids, strict=True)}

    def count(self) -> int:
        return int(self._redis.hlen(self.key))
