"""``ipaas-klaviyo reconcile``: enqueue what changed in iPaaS.com without a webhook.

One pass lists the records changed since the kind's watermark (the list API's update-time
filter) or, when iPaaS.com refuses or ignores that filter (or RECONCILE_FULL_SCAN is set),
every record, and enqueues a sync for each one whose payload differs from the last one
that reached Klaviyo. Enqueueing goes through the same atomic claim-and-push as webhooks,
so a record already queued is not queued twice.

A fleet-wide Redis lock lets one pass per kind run at a time. The pass saves a checkpoint
after every page; a pass that fails resumes at the next page with the same filter, and the
watermark moves (to the pass's start, less a clock-skew margin) only once a pass finished.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from worker.adapters.ipaas import FilterNotAccepted
from worker.adapters.locks import RedisLock
from worker.adapters.metrics import Metrics
from worker.adapters.pending import CUSTOMER as CUSTOMER_KIND
from worker.adapters.pending import PendingSyncs, SyncMessages
from worker.adapters.stores import CheckpointStore, WatermarkStore
from worker.adapters.tombstones import Tombstones
from worker.bootstrap import Container
from worker.config import Settings
from worker.core.errors import RetryableError
from worker.core.reconcile import (
    CUSTOMERS,
    FILTERED,
    FULL_SCAN,
    TRANSACTIONS,
    PassState,
    format_time,
    next_watermark,
    parse_time,
)
from worker.core.retry import GiveUp, RetryPolicy, decide
from worker.services.progress import Progress
from worker.services.reconcile_kinds import Customers, Page, RecordKind, Transactions, UpdateFilter

logger = logging.getLogger("ipaas_klaviyo.reconcile")

# Renewed after every page, so it only has to outlast one page (and its retries), not a
# whole pass; a crashed holder's lock frees itself this long after its last page.
LOCK_TTL_SECONDS = 600.0
PAGE_RETRY = RetryPolicy(max_attempts=5, base_seconds=1.0, cap_seconds=30.0)


def last_pass_name(kind: str) -> str:
    """The checkpoint holding a kind's last finished pass (its report)."""
    return f"reconcile:{kind}:last_pass"


class ReconcileBusy(Exception):
    """Another process holds this kind's reconcile lock; nothing was done."""


@dataclass
class ReconcileOptions:
    kind: str = CUSTOMERS
    since: datetime | None = None  # start a fresh pass from here instead of the watermark
    page_size: int = 100
    full_scan: bool = False
    update_filter: UpdateFilter = field(default_factory=UpdateFilter)
    lookback_seconds: float = 86400.0

    @classmethod
    def from_settings(cls, settings: Settings, kind: str = CUSTOMERS,
                      since: datetime | None = None) -> ReconcileOptions:
        return cls(kind=kind, since=since, page_size=settings.reconcile_page_size,
                   full_scan=settings.reconcile_full_scan,
                   update_filter=UpdateFilter(settings.reconcile_filter_action,
                                              settings.reconcile_filter_field),
                   lookback_seconds=settings.reconcile_lookback_seconds)


@dataclass
class ReconcileReport:
    kind: str
    mode: str
    since: datetime
    watermark: datetime
    counts: dict[str, int]
    resumed_at_page: int | None = None
    fell_back: str | None = None  # why a filtered pass became a full scan
    finished: bool = True  # False: the slice's time ran out; the checkpoint holds the rest

    def summary(self) -> str:
        c = self.counts
        how = f"{self.mode.replace('_', ' ')} since {format_time(self.since)}"
        if self.fell_back:
            how += f" (update-time filter {self.fell_back}: full scan)"
        if self.resumed_at_page:
            how += f", resumed at page {self.resumed_at_page}"
        if not self.finished:
            how += ", paused at the end of its time slice (continues)"
        return (f"reconcile {self.kind}: {how} | pages {c['pages']:,}, seen {c['seen']:,}, "
                f"enqueued {c['enqueued']:,}, unchanged {c['unchanged']:,}, "
                f"already queued {c['already_queued']:,} | "
                f"watermark {format_time(self.watermark)}")

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "mode": self.mode, "since": format_time(self.since),
                "watermark": format_time(self.watermark), "counts": dict(self.counts),
                "resumed_at_page": self.resumed_at_page, "fell_back": self.fell_back,
                "finished": self.finished}


class Reconciler:
    def __init__(self, c: Container, *, messages: SyncMessages | None = None,
                 kinds: dict[str, Callable[[ReconcileOptions], RecordKind]] | None = None,
                 progress_stream: TextIO | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 after_page: Callable[[PassState], None] | None = None) -> None:
        self.c = c
        self.messages = messages or SyncMessages(c.settings.lost_task_after_seconds)
        self.kinds = kinds or {CUSTOMERS: lambda o: Customers(c, o.update_filter),
                               TRANSACTIONS: lambda o: Transactions(c, o.update_filter)}
        self.pending = PendingSyncs(c.redis)
        self.checkpoints = CheckpointStore(c.redis)
        self.watermarks = WatermarkStore(c.redis)
        self._progress_stream = progress_stream
        self._sleep, self._clock, self._after_page = sleep, clock, after_page

    def run(self, options: ReconcileOptions, *, deadline: float | None = None
            ) -> ReconcileReport:
        """One pass (or the rest of an interrupted one). Raises ReconcileBusy when another
        pass of this kind holds the lock.

        ``deadline`` (a ``time.monotonic()`` value): stop after the page that reaches it,
        with the checkpoint saved, and report ``finished=False`` (the scheduled task runs in
        slices, each well inside the task time limit); the next run resumes there."""
        kind = self.kinds[options.kind](options)
        lock = RedisLock(self.c.redis, f"reconcile:{kind.name}", LOCK_TTL_SECONDS)
        if not lock.acquire():
            raise ReconcileBusy(kind.name)
        try:
            return self._run_locked(kind, options, lock, deadline)
        finally:
            lock.release()

    def _checkpoint_name(self, kind: RecordKind) -> str:
        return f"reconcile:{kind.name}"

    def _start(self, kind: RecordKind, options: ReconcileOptions) -> tuple[PassState, bool]:
        name = self._checkpoint_name(kind)
        saved = self.checkpoints.load(name) if options.since is None else None
        state = PassState.from_dict(saved) if saved else None
        if state is not None and state.kind == kind.name:
            return state, True
        now = self._clock()
        since = (options.since or self.watermarks.get(kind.name)
                 or now - timedelta(seconds=options.lookback_seconds))
        state = PassState(kind.name, since, now, FULL_SCAN if options.full_scan else FILTERED,
                          options.page_size)
        self.checkpoints.save(name, state.as_dict())
        return state, False

    def _run_locked(self, kind: RecordKind, options: ReconcileOptions,
                    lock: RedisLock, deadline: float | None) -> ReconcileReport:
        state, resumed = self._start(kind, options)
        report = ReconcileReport(kind.name, state.mode, state.since, state.since, state.counts,
                                 resumed_at_page=state.next_page if resumed else None)
        progress = (Progress(f"reconcile {kind.name}", ("seen", "enqueued"),
                             stream=self._progress_stream) if self._progress_stream else None)
        while True:
            try:
                for _, records in self._pages(kind, state, deadline):
                    self._page(kind, records, state, report, progress)
                    lock.renew()
                    if self._after_page is not None:
                        self._after_page(state)
                    if deadline is not None and time.monotonic() >= deadline:
                        report.finished = False
                        report.mode = state.mode
                        return report
                break
            except FilterNotAccepted:
                if state.mode == FULL_SCAN:
                    raise
                logger.warning("reconcile %s: update-time filter refused; full scan", kind.name)
                report.fell_back = "refused"
                state.mode, state.next_page = FULL_SCAN, 1
                self.checkpoints.save(self._checkpoint_name(kind), state.as_dict())
        report.mode = state.mode
        report.watermark = next_watermark(state.started_at, self.watermarks.get(kind.name))
        self.watermarks.set(kind.name, report.watermark)
        self.checkpoints.clear(self._checkpoint_name(kind))
        # What the operator console shows as the last pass.
        self.checkpoints.save(last_pass_name(kind.name),
                              {**report.as_dict(), "finished_at": format_time(self._clock())})
        if progress is not None:
            progress.finish()
        return report

    def _pages(self, kind: RecordKind, state: PassState, deadline: float | None
               ) -> Iterator[Page]:
        """The pages from ``state.next_page`` on; a transient failure retries from the page
        it hit, by the one retry rule, and gives up (leaving the checkpoint) when the rule
        does, or when the wait would pass the slice's deadline."""
        failures, first_failure = 0, 0.0
        while True:
            try:
                for page in kind.pages(state, state.next_page):
                    failures = 0
                    yield page
                return
            except RetryableError as exc:
                first_failure = first_failure if failures else time.monotonic()
                decision = decide(exc, failures, time.monotonic() - first_failure, PAGE_RETRY)
                if isinstance(decision, GiveUp) or (
                        deadline is not None and time.monotonic() + decision.delay > deadline):
                    raise
                failures = decision.attempts
                self._sleep(decision.delay)

    def _page(self, kind: RecordKind, records: list[dict[str, Any]], state: PassState,
              report: ReconcileReport, progress: Progress | None) -> None:
        if state.mode == FILTERED and _filter_ignored(records, state.since):
            # The server listed records it should have filtered out: it does not know the
            # filter. Its pages are the unfiltered list, so carry on there as a full scan.
            logger.warning("reconcile %s: update-time filter ignored; full scan", kind.name)
            report.fell_back = "ignored"
            state.mode = FULL_SCAN
        wanted = kind.to_sync(records, state)
        if kind.pending_kind == CUSTOMER_KIND:
            # Tombstoned customers (deleted or forgotten) are never synced again.
            deleted = Tombstones(self.c.redis).deleted(wanted)
            wanted = [record_id for record_id in wanted if record_id not in deleted]
        syncs = [self.messages.sync(kind.pending_kind, rid, None) for rid in wanted]
        pushed = self.pending.claim_and_push(syncs)
        enqueued = sum(pushed)
        state.add("pages")
        state.add("seen", len(records))
        state.add("unchanged", len(records) - len(wanted))
        state.add("enqueued", enqueued)
        state.add("already_queued", len(wanted) - enqueued)
        state.next_page += 1
        self.checkpoints.save(self._checkpoint_name(kind), state.as_dict())
        _count_metrics(self.c.redis, kind.name, len(records), len(records) - len(wanted),
                       enqueued, len(wanted) - enqueued)
        if progress is not None:
            progress.add("seen", len(records))
            progress.add("enqueued", enqueued)


def _filter_ignored(records: list[dict[str, Any]], since: datetime) -> bool:
    for record in records:
        updated = parse_time(record.get("updated_datetime"))
        if updated is not None and updated <= since:
            return True
    return False


def _count_metrics(client: Any, kind: str, seen: int, unchanged: int, enqueued: int,
                   already_queued: int) -> None:
    labels = {"kind": kind}
    Metrics(client).incr_many([
        ("reconcile_pages_total", labels, 1),
        ("reconcile_records_total", {**labels, "result": "seen"}, seen),
        ("reconcile_records_total", {**labels, "result": "unchanged"}, unchanged),
        ("reconcile_records_total", {**labels, "result": "enqueued"}, enqueued),
        ("reconcile_records_total", {**labels, "result": "already_queued"}, already_queued),
    ])


def scheduled_kinds(settings: Settings, reconciler: Reconciler) -> list[str]:
    """The kinds a scheduled or default pass covers: customers, and transactions when
    events are generated and this build can list them."""
    kinds = [CUSTOMERS]
    if settings.generate_events and TRANSACTIONS in reconciler.kinds:
        kinds.append(TRANSACTIONS)
    return kinds
