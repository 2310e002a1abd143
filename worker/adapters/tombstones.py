"""Tombstones: customers deleted in iPaaS.com (``customer/deleted``) or erased on request
(``ipaas-klaviyo forget``). Nothing syncs a tombstoned customer again: the sync task,
reconcile, replay and the backfills ask here first.

One Redis hash, ``{prefix}tombstones``: customer id -> JSON ``{at, source, profile_id}``,
ids and times only. ``deleted(ids)`` answers for many customers in one HMGET, for batch
paths that filter whole pages.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import redis

from worker.adapters import keys
from worker.adapters.links import require_decoded

WEBHOOK = "webhook"
FORGET = "forget"


@dataclass(frozen=True)
class Tombstone:
    customer_id: str
    at: str
    source: str
    profile_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"customer_id": self.customer_id, "at": self.at, "source": self.source,
                "profile_id": self.profile_id}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Tombstones:
    def __init__(self, client: redis.Redis, prefix: str | None = None) -> None:
        require_decoded(client)
        self._redis = client
        self.key = keys.key(keys.TOMBSTONES, prefix)

    def add(self, customer_id: str, source: str, profile_id: str | None = None) -> bool:
        """Tombstone the customer; False when it already was (the first record stays)."""
        value = json.dumps({"at": _now(), "source": source, "profile_id": profile_id})
        return bool(self._redis.hsetnx(self.key, str(customer_id), value))

    def add_many(self, customer_ids: list[str], source: str) -> None:
        """Tombstone several customers in one round trip (existing records stay)."""
        if not customer_ids:
            return
        value = json.dumps({"at": _now(), "source": source, "profile_id": None})
        pipe = self._redis.pipeline(transaction=False)
        for customer_id in customer_ids:
            pipe.hsetnx(self.key, str(customer_id), value)
        pipe.execute()

    def remember_profile(self, customer_id: str, profile_id: str) -> None:
        """Keep the linked profile id on the tombstone, so a deletion request retried after
        the link was removed still knows which profile to delete."""
        found = self.get(customer_id)
        if found is not None and found.profile_id != profile_id:
            value = json.dumps({"at": found.at, "source": found.source,
                                "profile_id": profile_id})
            self._redis.hset(self.key, str(customer_id), value)

    def get(self, customer_id: str) -> Tombstone | None:
        raw = cast(str | None, self._redis.hget(self.key, str(customer_id)))
        return _decode(str(customer_id), raw) if raw is not None else None

    def is_deleted(self, customer_id: str) -> bool:
        return bool(self._redis.hexists(self.key, str(customer_id)))

    def deleted(self, customer_ids: list[str]) -> set[str]:
        """Which of ``customer_ids`` are tombstoned (one HMGET for the lot)."""
        ids = [str(c) for c in customer_ids]
        if not ids:
            return set()
        found = cast(list[str | None], self._redis.hmget(self.key, ids))
        return {c for c, raw in zip(ids, found, strict=True) if raw is not None}

    def remove(self, customer_id: str) -> bool:
        """Lift a tombstone (an operator's decision, e.g. a forget by mistake)."""
        return bool(self._redis.hdel(self.key, str(customer_id)))

    def count(self) -> int:
        return int(self._redis.hlen(self.key))


def _decode(customer_id: str, raw: str) -> Tombstone:
    try:
        data = json.loads(raw)
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    profile_id = data.get("profile_id")
    return Tombstone(customer_id, str(data.get("at") or ""), str(data.get("source") or ""),
                     str(profile_id) if profile_id else None)

    def count(self) -> int:
        """How many customers carry a tombstone."""
        return int(cast(int, self._redis.hlen(self.key)))
