"""Which order events went out, per transaction: one Redis set, ``{prefix}:orders:sent``,
with members ``{kind}:{transaction id}`` (kind ``placed``, ``cancelled`` or ``refunded``).

It lets a repeated delivery or an update skip Klaviyo entirely; Klaviyo's ``unique_id``
de-duplication stays the safety net should this set be lost.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

import redis

from worker.adapters import keys
from worker.adapters.links import require_decoded
from worker.core.transaction_service import PLACED
from worker.core.transactions import CANCELLED, REFUNDED

KINDS = (PLACED, CANCELLED, REFUNDED)


class SentOrderStore:
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
