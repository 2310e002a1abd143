"""Recording what a bulk import job came to, customer by customer, as the live path would
have: history and metrics (``via=bulk``), dead letters, fingerprints, links written back to
iPaaS.com (the backfill's write-back task), and the address and lists steps that follow.

Each customer's ledger entry (its sync_customer task) is finished here, once its outcome is
written; until then the lost-task sweep would send its sync again.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from worker import bootstrap
from worker.adapters.stores import FingerprintStore
from worker.adapters.task_ledger import TaskLedger
from worker.core import reasons
from worker.core.burst import CONFLICT, REFUSED, BurstRow, WaitingSync
from worker.core.errors import FieldError, StepOutcome
from worker.services.burst_sync import stamp_after_import
from worker.services.sync_service import LINK_STORE
from worker.tasks.dispatch import send_step
from worker.tasks.links import write_back_links
from worker.tasks.names import APPLY_ADDRESS, APPLY_SUBSCRIPTIONS, SYNC_CUSTOMER
from worker.tasks.outcomes import record_outcome

# Follow-up steps go by name (worker/tasks/names.py): the step tasks' module hands its
# customers to burst batches, so it cannot be imported here.

PROFILE, ADDRESS = "profile", "address"
VIA = "bulk"
WRITE_BACK_CHUNK = 500


def settle_slice(c: bootstrap.Container, items: Iterable[tuple[BurstRow, dict[str, Any]]]
                 ) -> None:
    refused: list[tuple[BurstRow, list[FieldError]]] = []
    conflicts: list[BurstRow] = []
    imported: list[tuple[BurstRow, str]] = []
    for row, verdict in items:
        profile_id = verdict.get("profile_id")
        if verdict["verdict"] == REFUSED:
            refused.append((row, [FieldError(**e) for e in verdict.get("errors") or []]))
        elif verdict["verdict"] == CONFLICT or not profile_id:
            conflicts.append(row)  # not found afterwards either: let the live path resolve it
        else:
            imported.append((row, str(profile_id)))
    # A profile is "created" when nothing linked the customer before this batch; read before
    # the links are stored, so a slice recorded again after a crash says "updated".
    known = c.links.get_many([row.customer_id for row, _ in imported])
    unconfirmed = {row.customer_id: pid for row, pid in imported
                   if pid != row.linked_profile_id or row.link_source != LINK_STORE}
    if unconfirmed:
        # Stored unconfirmed first, as the backfill does: the write-back task confirms each
        # link once iPaaS.com holds it, and a sync meanwhile writes it back itself.
        c.links.set_many(unconfirmed, confirmed=False)
    ledger = TaskLedger(c.redis)
    for row, profile_id in imported:
        created = row.linked_profile_id is None and not known.get(row.customer_id)
        _imported(c, row, profile_id, created)
        ledger.finish(row.task_id)
    if unconfirmed:
        ids = list(unconfirmed)
        for start in range(0, len(ids), WRITE_BACK_CHUNK):
            chunk = ids[start:start + WRITE_BACK_CHUNK]
            write_back_links.apply_async(kwargs={"customer_ids": chunk})
    record_refused(c, refused)
    fall_back(c, conflicts)


def _imported(c: bootstrap.Container, row: BurstRow, profile_id: str, created: bool) -> None:
    cid = row.customer_id
    stamp = stamp_after_import(row, profile_id)
    fingerprints = FingerprintStore(c.redis)
    if stamp is None:
        fingerprints.forget(cid)
    else:
        fingerprints.set(cid, stamp)
    c.dead_letters.remove(f"{PROFILE}:{cid}")
    record_outcome(c, cid, StepOutcome(PROFILE, "created" if created else "updated",
                                       profile_id=profile_id),
                   row.tracking_guid, _elapsed_ms(row), via=VIA)
    step_kwargs = {"customer_id": cid, "profile_id": profile_id, "collection": row.collection,
                   "tracking_guid": row.tracking_guid}
    if row.location_applied:
        # The valid address went with the profile, as with the live path's upsert.
        c.dead_letters.remove(f"{ADDRESS}:{cid}")
        record_outcome(c, cid, StepOutcome(ADDRESS, "synced", profile_id=profile_id),
                       row.tracking_guid, 0.0, via=VIA)
    else:
        send_step(APPLY_ADDRESS, step_kwargs)  # a bad address: rejected by its own step
    send_step(APPLY_SUBSCRIPTIONS, step_kwargs)  # the batched subscription step, as always


def record_refused(c: bootstrap.Container, refused: list[tuple[BurstRow, list[FieldError]]]
                   ) -> None:
    """Rows Klaviyo refused for their data: dead-lettered ``klaviyo_rejected`` with the
    field, as a refused upsert is."""
    ledger = TaskLedger(c.redis)
    for row, errors in refused:
        c.dead_letters.record(customer_id=row.customer_id, step=PROFILE,
                              reason=reasons.KLAVIYO_REJECTED, errors=errors,
                              last_error="bulk_import_profiles: row refused")
        record_outcome(c, row.customer_id,
                       StepOutcome(PROFILE, "rejected", reasons.KLAVIYO_REJECTED, errors=errors),
                       row.tracking_guid, _elapsed_ms(row), via=VIA)
        ledger.finish(row.task_id)


def fall_back(c: bootstrap.Container, rows: list[BurstRow]) -> None:
    """Customers the job could not settle (an identifier conflict, a job that failed) go
    the single-write way, which resolves 409s, retries and dead-letters as always."""
    fall_back_syncs(c, [WaitingSync(r.customer_id, r.task_id, r.tracking_guid, True)
                        for r in rows])


def fall_back_syncs(c: bootstrap.Container, syncs: list[WaitingSync]) -> None:
    ledger = TaskLedger(c.redis)
    for sync in syncs:
        send_step(SYNC_CUSTOMER, {"customer_id": sync.customer_id,
                                  "tracking_guid": sync.tracking_guid, "force": sync.force,
                                  "single_write": True})
        ledger.finish(sync.task_id)
    c.metrics.incr("burst_fallbacks_total", {}, len(syncs))


def _elapsed_ms(row: BurstRow) -> float:
    return (time.time() - row.queued_at) * 1000 if row.queued_at else 0.0
