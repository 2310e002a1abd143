"""A burst batch's gather step: each customer it took is fetched from iPaaS.com (a bounded
pool of threads), mapped with the right collection, validated and checked against its
fingerprint, exactly as the live path's profile step does up to its upsert.

What comes of each: a row for the job; or the live path's outcome at once (``unchanged``;
``rejected`` and dead-lettered with the live reasons: invalid data, customer not found);
or, on a transient failure, the customer goes the single-write way, which retries it.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor

from worker import bootstrap
from worker.adapters.burst_buffer import BurstBuffer
from worker.adapters.task_ledger import TaskLedger
from worker.adapters.tombstones import Tombstones
from worker.core import reasons
from worker.core.burst import BurstRow, WaitingSync
from worker.core.errors import StepOutcome
from worker.core.retry import Done, GiveUp, RetryIn, attempt
from worker.services.burst_sync import prepare_burst_row
from worker.services.sync_service import ProfileSyncResult
from worker.tasks.burst_outcomes import VIA, fall_back_syncs
from worker.tasks.outcomes import record_outcome

logger = logging.getLogger("ipaas_klaviyo.burst")

PROFILE = "profile"
# iPaaS.com requests in flight per gathering batch: the HTTP session keeps 10 connections.
FETCH_THREADS = 10
SLICE = 500  # syncs gathered between checkpoints


def gather(c: bootstrap.Container, buffer: BurstBuffer, batch_id: str, start: int,
           deadline: float) -> bool:
    """Gather slices from checkpoint ``start`` until every sync is gathered (True) or the
    step's deadline is near (False: the next step goes on from the checkpoint)."""
    position = start
    with ThreadPoolExecutor(max_workers=FETCH_THREADS) as pool:
        while time.monotonic() < deadline:
            syncs = buffer.syncs(batch_id, position, SLICE)
            if not syncs:
                return True
            # Erased customers (tombstones) are never synced again, in a batch as alone.
            deleted = Tombstones(c.redis).deleted([s.customer_id for s in syncs])
            live = [s for s in syncs if s.customer_id not in deleted]
            results = list(pool.map(lambda s: _prepare(c, s), live))
            rows = [r for r in results if isinstance(r, BurstRow)]
            _skip_deleted(c, buffer, batch_id, [s for s in syncs if s.customer_id in deleted])
            _settle_the_rest(c, buffer, batch_id, live, results)
            position += len(syncs)
            buffer.gathered(batch_id, rows, position)
    return False


def _prepare(c: bootstrap.Container, sync: WaitingSync
             ) -> BurstRow | ProfileSyncResult | GiveUp | RetryIn:
    """The row, the unchanged result, the live path's rejection, or a transient failure."""
    result = attempt(lambda: prepare_burst_row(
        sync.customer_id, c.ports, c.mapping, default_region=c.settings.default_phone_region,
        task_id=sync.task_id, tracking_guid=sync.tracking_guid,
        force=sync.force or bool(c.dead_letters.for_customer(sync.customer_id)),
        now=sync.queued_at or time.time()), 0, 0.0, c.retry_policy)
    return result.value if isinstance(result, Done) else result


def _skip_deleted(c: bootstrap.Container, buffer: BurstBuffer, batch_id: str,
                  syncs: list[WaitingSync]) -> None:
    if not syncs:
        return
    ledger = TaskLedger(c.redis)
    for sync in syncs:
        record_outcome(c, sync.customer_id,
                       StepOutcome(PROFILE, "skipped", reasons.CUSTOMER_DELETED),
                       sync.tracking_guid, 0.0, via=VIA)
        ledger.finish(sync.task_id)
    buffer.settled(batch_id, [s.customer_id for s in syncs])


def _settle_the_rest(c: bootstrap.Container, buffer: BurstBuffer, batch_id: str,
                     syncs: list[WaitingSync],
                     results: list[BurstRow | ProfileSyncResult | GiveUp | RetryIn]) -> None:

    ledger = TaskLedger(c.redis)
    settled: list[str] = []
    retry: list[WaitingSync] = []
    last_error = ""
    for sync, result in zip(syncs, results, strict=True):
        cid = sync.customer_id
        if isinstance(result, BurstRow):
            continue
        elapsed = (time.time() - sync.queued_at) * 1000 if sync.queued_at else 0.0
        if isinstance(result, ProfileSyncResult):
            outcome = StepOutcome(PROFILE, "unchanged", profile_id=result.profile_id)
            c.dead_letters.remove(f"{PROFILE}:{cid}")
        elif isinstance(result, GiveUp):
            outcome = StepOutcome(PROFILE, "rejected", result.reason, errors=result.errors)
            c.dead_letters.record(customer_id=cid, step=PROFILE, reason=result.reason,
                                  errors=result.errors, last_error=result.last_error)
        else:
            retry.append(sync)
            last_error = result.last_error
            continue
        record_outcome(c, cid, outcome, sync.tracking_guid, elapsed, via=VIA)
        ledger.finish(sync.task_id)
        settled.append(cid)
    if retry:
        logger.warning("%d customers of burst batch %s go one by one after a transient "
                       "failure (last: %s)", len(retry), batch_id, last_error)
    fall_back_syncs(c, retry)
    buffer.settled(batch_id, settled + [s.customer_id for s in retry])
