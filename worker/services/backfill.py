"""``ipaas-klaviyo backfill``: load a whole customer base through Klaviyo bulk import jobs.

Streams the source (memory does not grow with the number of customers), prepares each
customer with the live path's mapping and validation, sends valid profiles in import jobs
of up to 10,000 profiles / 5 MB, polls them, dead-letters per-row import errors, stores the
links, then sends subscriptions and list changes in Klaviyo's batch sizes. After each job
the checkpoint moves past everything it covered, so an interrupted run picks up there;
re-importing a profile is an upsert, so a resumed run never duplicates one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from worker.adapters.klaviyo.bulk import BulkRowsRejected, KlaviyoBulkImports
from worker.adapters.stores import CheckpointStore
from worker.adapters.subscription_batches import BatchRow, send_subscription_batch
from worker.adapters.tombstones import Tombstones
from worker.bootstrap import Container
from worker.core import batch_outcomes, reasons
from worker.core.backfill import (
    BatchItem,
    BatchKey,
    PreparedCustomer,
    Rejection,
    SubscriptionBatcher,
    prepare_customer,
)
from worker.core.errors import FieldError, FinalError, headline_reason
from worker.core.retry import RetryPolicy, call_with_retries
from worker.services.backfill_sources import BadLine, file_source_name, iter_api, iter_file
from worker.services.progress import Progress

T = TypeVar("T")
LOOKUP_CHUNK = 500  # customers per link lookup (one HMGET)
WRITE_BACK_CHUNK = 500  # customer ids per write-back task
_JOB_OVERHEAD = 512  # bytes of envelope around the profiles in a job request


@dataclass
class BackfillOptions:
    path: str | None = None  # None: every customer from the iPaaS.com API
    dry_run: bool = False
    limit: int | None = None
    restart: bool = False
    page_size: int = 100
    job_max_profiles: int = 10_000
    job_max_bytes: int = 5_000_000
    poll_seconds: float = 0.25  # first poll; doubles up to 30 s while the job runs


@dataclass
class BackfillReport:
    counts: dict[str, int]
    resumed_after: int
    checkpoint: int
    summary: str
    rejected_ids: list[str] = field(default_factory=list)


class Backfill:
    def __init__(self, c: Container, bulk: KlaviyoBulkImports, *,
                 progress_stream: Any = None, sleep: Callable[[float], None] = time.sleep,
                 enqueue_write_back: Callable[[list[str]], None] | None = None) -> None:
        self.c = c
        self.bulk = bulk
        self.checkpoints = CheckpointStore(c.redis)
        self._progress_stream = progress_stream
        self._sleep = sleep
        self._enqueue_write_back = enqueue_write_back
        self._retry = RetryPolicy(max_attempts=6, base_seconds=1.0, cap_seconds=30.0)

    # -- the run ----------------------------------------------------------------------

    def run(self, options: BackfillOptions) -> BackfillReport:
        name = file_source_name(options.path) if options.path else "backfill:all"
        state = None if options.restart or options.dry_run else self.checkpoints.load(name)
        after = int(state["done"]) if state else 0
        if options.path is None and state and state.get("page_size"):
            options.page_size = int(state["page_size"])
        progress = Progress("backfill", ("read", "valid", "sent", "rejected"),
                            stream=self._progress_stream)
        rejected: set[str] = set()
        self._progress, self._rejected = progress, rejected
        self._dry_run = options.dry_run
        source = self._source(options, after)
        batch: list[PreparedCustomer] = []
        batch_bytes = _JOB_OVERHEAD
        done = after
        for chunk in _chunks(self._limited(source, options.limit), LOOKUP_CHUNK):
            ids = [str(r.get("id")) for _, r in chunk if not isinstance(r, BadLine)]
            links = self.c.links.get_many([i for i in ids if i and i != "None"])
            deleted = Tombstones(self.c.redis).deleted(ids)
            for ordinal, record in chunk:
                progress.add("read")
                if not isinstance(record, BadLine) and str(record.get("id")) in deleted:
                    done = ordinal  # tombstoned (deleted or forgotten): never loaded again
                    continue
                prepared = self._prepare(record, links)
                if prepared is not None:
                    progress.add("valid")
                    size = len(json.dumps(prepared.attributes, separators=(",", ":"))) + 64
                    if batch and (len(batch) >= options.job_max_profiles
                                  or batch_bytes + size > options.job_max_bytes):
                        self._flush(batch, done, name, options)
                        batch, batch_bytes = [], _JOB_OVERHEAD
                    batch.append(prepared)
                    batch_bytes += size
                done = ordinal
        if batch or done > after:
            self._flush(batch, done, name, options)
        if not options.dry_run:
            self.checkpoints.clear(name)  # finished: the next run starts from the beginning
        summary = progress.finish()
        return BackfillReport(dict(progress.counts), after, done, summary, sorted(rejected))

    def _source(self, options: BackfillOptions, after: int
                ) -> Iterator[tuple[int, dict[str, Any] | BadLine]]:
        if options.path:
            return iter_file(options.path, after)
        return iter_api(self.c.ipaas, options.page_size, after)

    @staticmethod
    def _limited(source: Iterator[T], limit: int | None) -> Iterator[T]:
        for count, item in enumerate(source):
            if limit is not None and count >= limit:
                return
            yield item

    # -- per customer -----------------------------------------------------------------

    def _prepare(self, record: dict[str, Any] | BadLine, links: dict[str, str | None]
                 ) -> PreparedCustomer | None:
        if isinstance(record, BadLine):
            self._progress.add("rejected")
            self._warn(f"line {record.line_number}: not a JSON object, skipped")
            return None
        cid = str(record.get("id")) if record.get("id") not in (None, "") else None
        preparation = prepare_customer(record, links.get(cid) if cid else None,
                                       self.c.mapping, self.c.settings.default_phone_region,
                                       self._subscribes_at_once)
        for rejection in preparation.rejections:
            self._dead_letter(rejection)
        return preparation.prepared

    def _subscribes_at_once(self, list_name: str) -> bool:
        """A single opt-in list gives consent at once (names are cached for the fleet). A
        dry run asks nothing; an unknown list is dead-lettered when its batch is sent."""
        if self._dry_run:
            return False
        ref = self._with_retries(lambda: self.c.lists.lookup(list_name))
        return ref is not None and ref.subscribes_at_once

    def _dead_letter(self, rejection: Rejection) -> None:
        if rejection.customer_id is None:
            self._progress.add("rejected")
            self._warn(f"a customer without an id was skipped ({rejection.reason})")
            return
        if rejection.customer_id not in self._rejected:
            self._rejected.add(rejection.customer_id)
            self._progress.add("rejected")
        if not self._dry_run:
            self.c.dead_letters.record(customer_id=rejection.customer_id, step=rejection.step,
                                       reason=rejection.reason, errors=rejection.errors)

    def _warn(self, message: str) -> None:
        if self._progress_stream is not None:
            self._progress_stream.write(f"\nwarning: {message}\n")

    # -- per job ----------------------------------------------------------------------

    def _flush(self, batch: list[PreparedCustomer], done: int, name: str,
               options: BackfillOptions) -> None:
        if options.dry_run:
            return
        if batch:
            links = self._import(batch, options)
            self._progress.add("sent", len(links))
            self.c.links.set_many(links, confirmed=False)
            self._write_back(list(links))
            self._subscriptions([p for p in batch if p.customer_id in links], links)
        state = {"done": done, "page_size": options.page_size,
                 "at": datetime.now(UTC).isoformat(timespec="seconds")}
        self.checkpoints.save(name, state)

    def _import(self, batch: list[PreparedCustomer], options: BackfillOptions
                ) -> dict[str, str]:
        """Send one job (dropping rows Klaviyo refuses as a whole); return customer → id."""
        rows = list(batch)
        for _ in range(3):
            try:
                profiles = [p.attributes for p in rows]
                job = self._with_retries(partial(self.bulk.start_job, profiles))
                break
            except BulkRowsRejected as refused:
                bad = {e.row_index for e in refused.rows if e.row_index is not None}
                if not bad:
                    raise
                for index in sorted(bad):
                    fields = [FieldError(e.field or "request", reasons.KLAVIYO_REJECTED, e.code)
                              for e in refused.rows if e.row_index == index]
                    self._dead_letter(Rejection(rows[index].customer_id, "profile",
                                                reasons.KLAVIYO_REJECTED, fields))
                rows = [p for i, p in enumerate(rows) if i not in bad]
                if not rows:
                    return {}
        else:
            raise FinalError("bulk import kept refusing rows; stopped")
        self._with_retries(lambda: self.bulk.wait(job.id, poll_seconds=options.poll_seconds,
                                                  sleep=self._sleep))
        by_external = {p.attributes.get("external_id"): p.customer_id for p in rows}
        for error in self._with_retries(lambda: list(self.bulk.iter_errors(job.id))):
            cid = by_external.get((error.original_payload or {}).get("external_id"))
            if cid is None:
                continue
            reason = (reasons.IDENTIFIER_CONFLICT if error.code == "duplicate_profile"
                      else reasons.KLAVIYO_REJECTED)
            self._dead_letter(Rejection(cid, "profile", reason, [
                FieldError(error.field or "profile", reason, error.code)]))
        # A row that failed import is simply not found (or found as the profile that already
        # held its identifiers, which is then the right link).
        wanted = [ext for ext in by_external if ext]
        ids = self._with_retries(partial(self.bulk.profile_ids_by_external_id, wanted))
        return {by_external[ext]: pid for ext, pid in ids.items() if ext in by_external}

    def _write_back(self, customer_ids: list[str]) -> None:
        if self._enqueue_write_back is None:
            return
        for chunk in _chunks(customer_ids, WRITE_BACK_CHUNK):
            self._enqueue_write_back(chunk)

    # -- subscriptions ----------------------------------------------------------------

    def _subscriptions(self, batch: list[PreparedCustomer], links: dict[str, str]) -> None:
        batcher = SubscriptionBatcher()
        for prepared in batch:
            item = BatchItem(prepared.customer_id, links[prepared.customer_id],
                             prepared.attributes.get("email"),
                             prepared.attributes.get("phone_number"))
            for action in prepared.actions:
                full = batcher.add(action, item)
                if full:
                    self._send_batch(*full)
        for key, items in batcher.drain():
            self._send_batch(key, items)

    def _send_batch(self, key: BatchKey, items: list[BatchItem]) -> None:
        kind, list_name, historical = key
        list_id = None
        if list_name is not None:
            list_id = self._with_retries(lambda: self.c.lists.list_id(list_name))
            if list_id is None:
                for item in items:
                    self._dead_letter(Rejection(item.customer_id, "lists", reasons.UNKNOWN_LIST, [
                        FieldError(f"LIST_{list_name}", reasons.UNKNOWN_LIST,
                                   "no Klaviyo list has this name")]))
                return
        consented_at = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
        rows = [BatchRow(i.profile_id, i.email, i.phone_number,
                         consented_at if historical else None) for i in items]
        batch_key = batch_outcomes.BatchKey(kind, list_id, historical)  # list id, not name
        try:
            refused = self._with_retries(
                lambda: send_subscription_batch(self.c.klaviyo, batch_key, rows))
        except FinalError as failure:
            refused = {n: failure.errors for n in range(len(items))}
        # Only the rows Klaviyo refused are dead-lettered; the rest of the batch went through.
        for n, errors in refused.items():
            self._dead_letter(Rejection(items[n].customer_id, "lists", headline_reason(errors),
                                        errors))

    # -- transient failures -----------------------------------------------------------

    def _with_retries(self, call: Callable[[], T]) -> T:
        return call_with_retries(call, self._retry, self._sleep, time.monotonic)

    _dry_run = False
    _progress: Progress
    _rejected: set[str]


def _chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
