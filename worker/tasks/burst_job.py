"""A burst batch's job: submit it, poll it to completion, read the profile ids back, map
its import errors back to customers, and record each customer's outcome in slices.

Each function is one checkpointed part of a batch step (worker/tasks/burst.py runs them):
it returns the seconds until the batch's next step, or None when the batch is finished.
"""

from __future__ import annotations

import json
import time
from typing import Any

from worker import bootstrap
from worker.adapters.burst_buffer import FLUSH_MARKER_SECONDS, FLUSH_WINDOW_SECONDS, BurstBuffer
from worker.adapters.klaviyo.bulk import BulkRowsRejected, ImportRowError
from worker.core import reasons
from worker.core.burst import (
    BurstRow,
    RowError,
    WaitingSync,
    row_verdicts,
    rows_that_fit,
)
from worker.core.errors import FieldError
from worker.tasks.burst_outcomes import record_refused, settle_slice
from worker.tasks.dispatch import send_later
from worker.tasks.names import FLUSH_BURST

POLL_FIRST_SECONDS, POLL_MAX_SECONDS = 1.0, 5.0
# Profile ids are read back 100 a call; a pause between calls keeps a batch's read-back
# (100 calls for 10,000 customers) near 20 calls/s, far from the L tier's 75/s even when
# a busy machine delays requests past the limiter's margin and bunches them up.
READ_BACK_CHUNK, READ_BACK_PAUSE_SECONDS = 100, 0.05


def submit(c: bootstrap.Container, buffer: BurstBuffer, batch_id: str,
            state: dict[str, str], deadline: float) -> float | None:
    # A gather step repeated after a crash appended some rows twice: the last one counts.
    rows = list({r.customer_id: r for r in buffer.rows(batch_id)}.values())
    sizes = [len(json.dumps({"type": "profile", "attributes": r.attributes},
                            separators=(",", ":"), default=str)) for r in rows]
    fit = rows_that_fit(sizes)
    if fit < len(rows):  # over 5 MB: the rest waits for the next job
        buffer.put_back(batch_id, [WaitingSync(r.customer_id, r.task_id, r.tracking_guid,
                                               queued_at=r.queued_at) for r in rows[fit:]])
        rows = rows[:fit]
    buffer.replace_rows(batch_id, rows)
    while rows:
        try:
            job = c.bulk.start_job([r.attributes for r in rows])
        except BulkRowsRejected as refused:
            # Klaviyo validates the job as a whole: drop the rows it names, send the rest.
            bad = {e.row_index for e in refused.rows if e.row_index is not None}
            if not bad:
                raise
            record_refused(c, [(rows[i], _refusals(refused.rows, i)) for i in sorted(bad)
                               if i < len(rows)])
            buffer.settled(batch_id, [rows[i].customer_id for i in bad if i < len(rows)])
            rows = [r for i, r in enumerate(rows) if i not in bad]
            buffer.replace_rows(batch_id, rows)
            continue
        buffer.set_state(batch_id, phase="poll", job_id=job.id, polls=0)
        return POLL_FIRST_SECONDS
    finished(buffer, batch_id)
    return None


def _refusals(errors: list[ImportRowError], index: int) -> list[FieldError]:
    return [FieldError(e.field or "profile", reasons.KLAVIYO_REJECTED,
                       f"Klaviyo refused the row ({e.code})")
            for e in errors if e.row_index == index]


def poll(c: bootstrap.Container, buffer: BurstBuffer, batch_id: str,
          state: dict[str, str], deadline: float) -> float | None:
    job_id = state["job_id"]
    polls = int(state.get("polls") or 0)
    job = c.bulk.get_job(job_id)
    if not job.finished:
        buffer.set_state(batch_id, polls=polls + 1)
        return min(POLL_MAX_SECONDS, POLL_FIRST_SECONDS * 2 ** polls)
    rows = buffer.rows(batch_id)
    if not rows:
        finished(buffer, batch_id)
        return None
    errors = [_row_error(e) for e in c.bulk.iter_errors(job_id)] if job.failed_count else []
    verdicts = row_verdicts(rows, errors)
    found = _read_back(c, buffer, batch_id, rows, deadline)
    if found is None:
        return 0.0
    saved: dict[str, dict[str, Any]] = {}
    for row in rows:
        verdict = verdicts[row.customer_id]
        profile_id = found.get(str(row.attributes.get("external_id"))) or row.linked_profile_id
        saved[row.customer_id] = {
            "verdict": verdict.verdict, "profile_id": profile_id,
            "errors": [e.as_dict() for e in verdict.errors]}
    buffer.save_verdicts(batch_id, saved)
    return settle(c, buffer, batch_id, state, deadline)


def _read_back(c: bootstrap.Container, buffer: BurstBuffer, batch_id: str,
               rows: list[BurstRow], deadline: float) -> dict[str, str] | None:
    """external id → profile id, read back 100 a call (L tier) as the backfill does, paced
    and checkpointed: ids found are kept in Redis, so a step retried after a 429 goes on
    where it stopped, and a batch's hundred calls never come as one burst."""
    found = buffer.found(batch_id)
    wanted = [str(r.attributes["external_id"]) for r in rows
              if r.attributes.get("external_id") and str(r.attributes["external_id"]) not in found]
    for start in range(0, len(wanted), READ_BACK_CHUNK):
        if time.monotonic() > deadline:
            return None  # the next step goes on from what is kept
        chunk = wanted[start:start + READ_BACK_CHUNK]
        ids = c.bulk.profile_ids_by_external_id(chunk)
        # An id not found is recorded too (empty): the row then falls back to a single write.
        buffer.add_found(batch_id, {ext: ids.get(ext, "") for ext in chunk})
        found.update(ids)
        time.sleep(READ_BACK_PAUSE_SECONDS)
    return {ext: pid for ext, pid in found.items() if pid}


def _row_error(error: ImportRowError) -> RowError:
    payload = error.original_payload or {}
    external, email = payload.get("external_id"), payload.get("email")
    return RowError(error.row_index, error.field, error.code,
                    external_id=str(external) if external is not None else None,
                    email=str(email) if email is not None else None)


def settle(c: bootstrap.Container, buffer: BurstBuffer, batch_id: str,
            state: dict[str, str], deadline: float) -> float | None:
    """Record outcomes slice by slice until done, or hand the rest to the next step."""
    rows = {r.customer_id: r for r in buffer.rows(batch_id)}
    while time.monotonic() < deadline:
        verdicts = buffer.verdicts(batch_id, 500)
        if not verdicts:
            finished(buffer, batch_id)
            return None
        settle_slice(c, [(rows[cid], v) for cid, v in verdicts.items() if cid in rows])
        if buffer.settled(batch_id, list(verdicts)) == 0:
            finished(buffer, batch_id)
            return None
    return 0.0


def finished(buffer: BurstBuffer, batch_id: str) -> None:
    """Done: a newer change of one of its customers, held back meanwhile, can go now."""
    buffer.finish(batch_id)
    if buffer.waiting():
        schedule_flush(buffer)


def schedule_flush(buffer: BurstBuffer) -> None:
    """A flush in FLUSH_WINDOW_SECONDS, unless one is scheduled already."""
    if buffer.claim_flush(FLUSH_MARKER_SECONDS):
        send_later(FLUSH_BURST, {}, FLUSH_WINDOW_SECONDS)
