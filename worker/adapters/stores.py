"""The small Redis stores: the payload fingerprints, resumable runs' checkpoints,
reconciliation's watermarks and the order events already sent. Keys: worker/adapters/keys.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any, cast

import redis

from worker.adapters import keys
from worker.adapters.links import require_decoded
from worker.core.reconcile import format_time, parse_time
from worker.core.transactions import CANCELLED, PLACED, REFUNDED


class FingerprintStore:
    """The fingerprint of the last payload that reached Klaviyo, per customer (one hash)."""

    def __init__(self, client: redis.Redis, prefix: str | None = None) -> None:
        self._redis = client
        self.key = keys.key(keys.FINGERPRINTS, prefix)

    def get(self, customer_id: str) -> str | None:
        return cast(str | None, self._redis.hget(self.key, customer_id))

    def set(self, customer_id: str, value: str) -> None:
        self._redis.hset(self.key, customer_id, value)

    def forget(self, customer_id: str) -> None:
        self._redis.hdel(self.key, customer_id)


class CheckpointStore:
    """Where a long run (backfill, reconcile) keeps its resume point."""

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


class WatermarkStore:
    """How far reconciliation has looked, per kind of record: one string per kind."""

    def __init__(self, client: redis.Redis, prefix: str | None = None) -> None:
        self._redis = client
        self._prefix = keys.key(keys.WATERMARKS + ":", prefix)

    def get(self, kind: str) -> datetime | None:
        return parse_time(cast(str | None, self._redis.get(self._prefix + kind)))

    def set(self, kind: str, moment: datetime) -> None:
        self._redis.set(self._prefix + kind, format_time(moment))

    def clear(self, kind: str) -> None:
        self._redis.delete(self._prefix + kind)


KINDS = (PLACED, CANCELLED, REFUNDED)


class SentOrderStore:
    """Which order events went out, per transaction: one set with members
    ``{kind}:{transaction id}`` (kind ``placed``, ``cancelled`` or ``refunded``).

    It lets a repeated delivery or an update skip Klaviyo entirely; Klaviyo's ``unique_id``
    de-duplication stays the safety net should this set be lost.
    """

    def __init__(self, client: redis.Redis, prefix: str | None = None) -> None:
        require_decoded(client)
        self._redis = client
        self.key = keys.key(keys.SENT_ORDERS, prefix)

    def sent(self, transaction_id: str) -> set[str]:
        found = cast(list[int], self._redis.smismember(
            self.key, [f"{kind}:{transaction_id}" for kind in KINDS]))
        return {kind for kind, present in zip(KINDS, found, strict=True) if present}

    def mark(self, transaction_id: str, kind: str) -> None:
        self._redis.sadd(self.key, f"{kind}:{transaction_id}")

    def mark_placed(self, transaction_ids: Iterable[str]) -> None:
        members = [f"{PLACED}:{tid}" for tid in transaction_ids]
        if members:
            self._redis.sadd(self.key, *members)

    def placed_among(self, transaction_ids: list[str]) -> set[str]:
        """Those of ``transaction_ids`` whose Placed Order already went out."""
        if not transaction_ids:
            return set()
        found = cast(list[int], self._redis.smismember(
            self.key, [f"{PLACED}:{tid}" for tid in transaction_ids]))
        return {tid for tid, present in zip(transaction_ids, found, strict=True) if present}
