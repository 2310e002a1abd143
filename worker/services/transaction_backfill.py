"""``ipaas-klaviyo backfill --transactions``: historical orders through Klaviyo's bulk event
jobs, with ``backfill: true`` so old orders do not fire post-purchase flows.

Streams the source (the iPaaS.com list endpoint or a JSON-lines file), validates each
transaction as the live path does (rejections go to the dead-letter store), skips those
whose Placed Order already went out, and sends the events of many orders per request (up to
1,000 events / 5 MB). After each request the orders are marked sent and the checkpoint moves
past them, so an interrupted run resumes there; Klaviyo's ``unique_id`` de-duplication makes
a repeated request harmless.

An order goes to its customer's linked profile; a customer not linked yet is named by
``external_id`` (the iPaaS.com customer id, as the profile mapping sets it) and email, so
Klaviyo matches or creates the same profile the customer sync will. Backfill customers
first for complete profiles.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from typing import Any, TypeVar

from worker.adapters.dead_letters import TRANSACTION_STEP
from worker.adapters.klaviyo.events import MAX_EVENTS_PER_REQUEST, KlaviyoEvents, ProfileEvents
from worker.adapters.stores import CheckpointStore
from worker.adapters.tombstones import Tombstones
from worker.bootstrap import Container
from worker.core.errors import ValidationFailed
from worker.core.events import build_order_events, event_attributes, profile_reference
from worker.core.retry import RetryPolicy, call_with_retries
from worker.core.transactions import (
    check_transaction,
    customer_id_of,
    email_of,
    transaction_id,
)
from worker.services.backfill_sources import BadLine, file_source_name, iter_file
from worker.services.progress import Progress

T = TypeVar("T")
CHECKPOINT_ALL = "backfill:transactions:all"
LOOKUP_CHUNK = 500  # orders per link and sent-marker lookup


@dataclass
class TransactionBackfillOptions:
    path: str | None = None  # None: every transaction from the iPaaS.com API
    restart: bool = False
    limit: int | None = None
    page_size: int = 100
    max_events: int = MAX_EVENTS_PER_REQUEST


@dataclass
class TransactionBackfillReport:
    counts: dict[str, int]
    resumed_after: int
    requests: int
    summary: str
    rejected_ids: list[str] = field(default_factory=list)


@dataclass
class _Pending:
    items: list[ProfileEvents] = field(default_factory=list)
    transaction_ids: list[str] = field(default_factory=list)
    events: int = 0


class TransactionBackfill:
    def __init__(self, c: Container, *, progress_stream: Any = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.c = c
        self.events = KlaviyoEvents(c.klaviyo)
        self.checkpoints = CheckpointStore(c.redis)
        self.sent = c.sent_orders
        self._stream = progress_stream
        self._sleep = sleep
        self._retry = RetryPolicy(max_attempts=6, base_seconds=1.0, cap_seconds=30.0)
        self.requests = 0
        self._links: dict[str, str | None] = {}
        self._deleted: set[str] = set()
        self._placed: set[str] = set()

    def run(self, options: TransactionBackfillOptions) -> TransactionBackfillReport:
        name = ("backfill:transactions:" + file_source_name(options.path).split(":", 1)[1]
                if options.path else CHECKPOINT_ALL)
        state = None if options.restart else self.checkpoints.load(name)
        after = int(state["done"]) if state else 0
        progress = Progress("backfill transactions", ("read", "valid", "events", "rejected"),
                            stream=self._stream)
        rejected: list[str] = []
        pending, done = _Pending(), after
        source = islice(self._source(options, after), options.limit)
        for chunk in _chunks(source, LOOKUP_CHUNK):
            self._look_up([r for _, r in chunk if not isinstance(r, BadLine)])
            for ordinal, record in chunk:
                progress.add("read")
                item = self._prepare(record, rejected, progress)
                if item is not None:
                    tid, profile_events = item
                    if pending.events and pending.events + len(profile_events.events) \
                            > options.max_events:
                        self._send(pending, name, done, progress)
                        pending = _Pending()
                    pending.items.append(profile_events)
                    pending.transaction_ids.append(tid)
                    pending.events += len(profile_events.events)
                done = ordinal
        self._send(pending, name, done, progress)
        if options.limit is None or progress.counts["read"] < options.limit:
            self.checkpoints.clear(name)  # finished: the next run starts from the beginning
        summary = progress.finish()
        return TransactionBackfillReport(dict(progress.counts), after, self.requests, summary,
                                         rejected)

    def _source(self, options: TransactionBackfillOptions, after: int
                ) -> Iterator[tuple[int, dict[str, Any] | BadLine]]:
        if options.path:
            return iter_file(options.path, after)
        return self._api(options.page_size, after)

    def _api(self, page_size: int, after: int
             ) -> Iterator[tuple[int, dict[str, Any] | BadLine]]:
        start_page = after // page_size + 1
        for page, records in self.c.ipaas.iter_transactions(page_size=page_size,
                                                            start_page=start_page):
            for index, record in enumerate(records, start=1):
                ordinal = (page - 1) * page_size + index
                if ordinal > after:
                    yield ordinal, record

    def _look_up(self, records: list[dict[str, Any]]) -> None:
        """Links and sent markers of a chunk in two round trips, not two per order."""
        customers = {c for c in map(customer_id_of, records) if c is not None}
        self._links = self.c.links.get_many(sorted(customers))
        self._deleted = Tombstones(self.c.redis).deleted(sorted(customers))
        self._placed = self.sent.placed_among(
            [t for t in map(transaction_id, records) if t is not None])

    def _prepare(self, record: dict[str, Any] | BadLine, rejected: list[str],
                 progress: Progress) -> tuple[str, ProfileEvents] | None:
        if isinstance(record, BadLine):
            progress.add("rejected")
            self._warn(f"line {record.line_number}: not a JSON object, skipped")
            return None
        tid = transaction_id(record)
        try:
            check_transaction(record,
                              reject_duplicate_skus=self.c.settings.reject_duplicate_skus)
        except ValidationFailed as failure:
            progress.add("rejected")
            if tid is None:
                self._warn(f"a transaction without an id was skipped ({failure.reason})")
                return None
            rejected.append(tid)
            self.c.dead_letters.record(customer_id=customer_id_of(record),
                                       step=TRANSACTION_STEP, transaction_id=tid,
                                       reason=failure.reason, errors=failure.errors)
            return None
        assert tid is not None
        if tid in self._placed:
            return None  # went out before (live or an earlier run): append-only
        if customer_id_of(record) in self._deleted:
            return None  # an order of a deleted customer would bring the person back
        progress.add("valid")
        profile = self._profile(record)
        attributes = []
        for event in build_order_events(record, self.c.mapping.events,
                                        self.c.transaction_settings.events):
            sent = event_attributes(event, profile)
            del sent["profile"]  # the bulk item names the profile once
            attributes.append(sent)
        return tid, ProfileEvents(profile=profile_reference(profile), events=attributes)

    def _profile(self, record: dict[str, Any]) -> dict[str, Any]:
        customer_id = customer_id_of(record)
        if customer_id is not None:
            linked = self._links.get(customer_id)
            if linked:
                return {"id": linked}
            return {"external_id": customer_id, "email": email_of(record)}
        return {"email": email_of(record)}

    def _send(self, pending: _Pending, name: str, done: int, progress: Progress) -> None:
        if pending.items:
            self.requests += self._with_retries(
                lambda: self.events.bulk_create_events(pending.items, backfill=True))
            self.sent.mark_placed(pending.transaction_ids)
            progress.add("events", pending.events)
        self.checkpoints.save(name, {"done": done,
                                     "at": datetime.now(UTC).isoformat(timespec="seconds")})

    def _with_retries(self, call: Callable[[], T]) -> T:
        return call_with_retries(call, self._retry, self._sleep, time.monotonic)

    def _warn(self, message: str) -> None:
        if self._stream is not None:
            self._stream.write(f"\nwarning: {message}\n")


def _chunks(items: Iterator[T], size: int) -> Iterator[list[T]]:
    while chunk := list(islice(items, size)):
        yield chunk
