"""Which Klaviyo profile belongs to which iPaaS.com customer.

One Redis hash, ``{prefix}:links``, maps customer id to profile id, so a lookup of many
customers is a single HMGET; ``{prefix}:links:by-profile`` maps back (consent-sync starts
from Klaviyo profiles). A reverse entry counts only while the forward link agrees, so one
left behind by a relink or a deletion never names the wrong customer. A link not yet
written back to iPaaS.com's external-id table (the backfill stores links faster than
iPaaS.com takes them) is kept with a ``~`` prefix: ``lookup`` reports it as unconfirmed
and the next sync or write-back task confirms it.
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
        self.reverse_key = keys.key(keys.LINKS_BY_PROFILE, prefix)

    def get(self, customer_id: str) -> str | None:
        return self.lookup(customer_id)[0]

    def lookup(self, customer_id: str) -> tuple[str | None, bool]:
        """(profile id or None, whether iPaaS.com is known to hold the same link)."""
        return _decode(cast(str | None, self._redis.hget(self.key, customer_id)))

    def set(self, customer_id: str, profile_id: str, *, confirmed: bool = True) -> None:
        value = profile_id if confirmed else UNCONFIRMED + profile_id
        pipe = self._redis.pipeline(transaction=False)
        pipe.hset(self.key, customer_id, value)
        pipe.hset(self.reverse_key, profile_id, customer_id)
        pipe.execute()

    def set_many(self, links: dict[str, str], *, confirmed: bool = True) -> None:
        if links:
            prefix = "" if confirmed else UNCONFIRMED
            pipe = self._redis.pipeline(transaction=False)
            pipe.hset(self.key, mapping={c: prefix + p for c, p in links.items()})
            pipe.hset(self.reverse_key, mapping={p: c for c, p in links.items()})
            pipe.execute()

    def delete(self, customer_id: str) -> None:
        profile_id = self.get(customer_id)
        pipe = self._redis.pipeline(transaction=False)
        pipe.hdel(self.key, customer_id)
        if profile_id is not None:
            pipe.hdel(self.reverse_key, profile_id)
        pipe.execute()

    def customers_for(self, profile_ids: list[str]) -> dict[str, str]:
        """profile id -> linked customer id, for the profiles our store links (two HMGETs)."""
        if not profile_ids:
            return {}
        back = cast(list[str | None], self._redis.hmget(self.reverse_key, profile_ids))
        candidates = {p: c for p, c in zip(profile_ids, back, strict=True) if c is not None}
        if not candidates:
            return {}
        forward = self.get_many(list(candidates.values()))
        return {p: c for p, c in candidates.items() if forward.get(c) == p}

    def get_many(self, customer_ids: list[str]) -> dict[str, str | None]:
        if not customer_ids:
            return {}
        profile_ids = cast(list[str | None], self._redis.hmget(self.key, customer_ids))
        return {c: _decode(p)[0] for c, p in zip(customer_ids, profile_ids, strict=True)}

    def count(self) -> int:
        return int(self._redis.hlen(self.key))
