"""What reconciliation pages through, per kind of record, and how it tells changed records
from unchanged ones.

A kind lists one page at a time (filtered on the update time when the pass is, which may
raise FilterNotAccepted) and decides, for a whole page at once, which records need a sync.
Transactions plug in as another kind.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol, cast

from worker.adapters.pending import CUSTOMER, TRANSACTION
from worker.adapters.stores import FingerprintStore
from worker.bootstrap import Container
from worker.core.reconcile import (
    CUSTOMERS,
    FILTERED,
    SYNC,
    TRANSACTIONS,
    PassState,
    decide,
    decide_transaction,
    parse_time,
)
from worker.services.sync_service import build_profile_payload

Page = tuple[int, list[dict[str, Any]]]


@dataclass(frozen=True)
class UpdateFilter:
    action: str = "greaterthan"
    field: str = "UpdateDateTime"


class RecordKind(Protocol):
    name: str  # the watermark's and checkpoint's name: "customers", "transactions"
    pending_kind: str  # PendingSyncs kind and producers.intake.TASKS key of the sync task

    def pages(self, state: PassState, start_page: int) -> Iterator[Page]: ...

    def to_sync(self, records: list[dict[str, Any]], state: PassState) -> list[str]:
        """Ids of the records on this page that need a sync, in page order."""
        ...


def record_id(record: dict[str, Any]) -> str | None:
    value = record.get("id")
    return None if value in (None, "") else str(value)


class Customers:
    name = CUSTOMERS
    pending_kind = CUSTOMER

    def __init__(self, c: Container, update_filter: UpdateFilter) -> None:
        self.c = c
        self.update_filter = update_filter
        self._fingerprints = FingerprintStore(c.redis)

    def pages(self, state: PassState, start_page: int) -> Iterator[Page]:
        return self.c.ipaas.iter_customers(
            state.page_size, start_page,
            since=state.since if state.mode == FILTERED else None,
            filter_action=self.update_filter.action, filter_field=self.update_filter.field,
        )

    def to_sync(self, records: list[dict[str, Any]], state: PassState) -> list[str]:
        # Two HMGETs a page: the links (they decide Add or Update, part of the fingerprint)
        # and the stored fingerprints; mapping runs locally. An unchanged customer costs
        # no task, no iPaaS.com call and no Klaviyo call.
        ids = [i for i in (record_id(r) for r in records) if i is not None]
        links = self.c.links.get_many(ids)
        stored = dict(zip(ids, cast(list[str | None], self.c.redis.hmget(
            self._fingerprints.key, ids)) if ids else [], strict=True))
        wanted: list[str] = []
        for record in records:
            cid = record_id(record)
            if cid is None:
                continue  # nothing to enqueue by; the webhook path rejects such records too
            current = self._fingerprints_now(record, links.get(cid), stored.get(cid))
            verdict = decide(parse_time(record.get("updated_datetime")), state.since,
                             mode=state.mode, current_fingerprints=current,
                             stored_fingerprint=stored.get(cid))
            if verdict == SYNC:
                wanted.append(cid)
        return wanted

    def _fingerprints_now(self, record: dict[str, Any], linked: str | None,
                          stored: str | None) -> tuple[str, ...]:
        """What a sync would store for this customer now; empty when it cannot be mapped.

        A profile created by its first sync stores the fingerprint of the Add mapping (no
        link yet); later the link makes it an Update. So a linked customer also matches the
        fingerprint of its unlinked form: data identical to what created the profile is not
        a change.
        """
        settings = self.c.settings
        try:
            linked_print = build_profile_payload(record, linked, self.c.mapping,
                                                 settings.default_phone_region).fingerprint
            if stored is None or linked is None or linked_print == stored:
                return (linked_print,)
            return (linked_print, build_profile_payload(
                record, None, self.c.mapping, settings.default_phone_region).fingerprint)
        except Exception:  # invalid now (or a mapping bug): the update time decides
            return ()


class Transactions:
    """Transactions whose order events have not all gone out (GENERATE_EVENTS on)."""

    name = TRANSACTIONS
    pending_kind = TRANSACTION

    def __init__(self, c: Container, update_filter: UpdateFilter) -> None:
        self.c = c
        self.update_filter = update_filter

    def pages(self, state: PassState, start_page: int) -> Iterator[Page]:
        return self.c.ipaas.iter_transactions(
            state.page_size, start_page,
            since=state.since if state.mode == FILTERED else None,
            filter_action=self.update_filter.action, filter_field=self.update_filter.field,
        )

    def to_sync(self, records: list[dict[str, Any]], state: PassState) -> list[str]:
        ids = [i for i in (record_id(r) for r in records) if i is not None]
        placed = self.c.sent_orders.placed_among(ids)  # one SMISMEMBER a page
        wanted = []
        for record in records:
            tid = record_id(record)
            if tid is not None and decide_transaction(
                    parse_time(record.get("updated_datetime")), state.since, mode=state.mode,
                    placed_sent=tid in placed,
                    status_events=self.c.settings.transaction_status_events) == SYNC:
                wanted.append(tid)
        return wanted
