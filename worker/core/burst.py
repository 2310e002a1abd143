"""Burst mode's pure decisions: when the fleet switches, how many waiting customers one bulk
import job takes, and what each customer's row in a finished job came to.

Burst mode sends a backlog of customers to Klaviyo as profile bulk import jobs (up to 10,000
profiles, 5 MB a job) instead of one profile-import call each. Everything else about a
customer (mapping, validation, fingerprints, links, steps that follow) is the live path's.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from worker.core import reasons
from worker.core.errors import FieldError

MAX_PROFILES_PER_JOB = 10_000
MAX_JOB_BYTES = 5_000_000
# Room for the request envelope around the rows (the same headroom the adapter keeps).
JOB_ENVELOPE_BYTES = 16_384
# Klaviyo's code for a row whose identifiers belong to different profiles.
CONFLICT_CODES = frozenset({"duplicate_profile", "conflict"})

IMPORTED, REFUSED, CONFLICT, MISSING = "imported", "refused", "conflict", "missing"


def next_mode(on: bool, backlog: int, threshold: int) -> bool:
    """Burst mode with hysteresis: on when more than ``threshold`` customers wait, off again
    only below half of it, so a backlog hovering at the threshold does not flap.
    ``threshold`` 0 (or less) turns burst mode off for good."""
    if threshold <= 0:
        return False
    if on:
        return backlog >= threshold / 2
    return backlog > threshold


def rows_that_fit(sizes: Sequence[int], *, max_count: int = MAX_PROFILES_PER_JOB,
                  max_bytes: int = MAX_JOB_BYTES) -> int:
    """How many of the waiting rows (their encoded sizes, oldest first) one job takes: at
    most ``max_count`` and a body within ``max_bytes``. The first row always goes, so a
    row too big for any job is refused alone rather than blocking the rest."""
    budget = max_bytes - JOB_ENVELOPE_BYTES
    used = 0
    for count, size in enumerate(sizes[:max_count]):
        used += size + 1  # the comma between rows
        if count and used > budget:
            return count
    return min(len(sizes), max_count)


@dataclass(frozen=True)
class WaitingSync:
    """A customer's sync handed to burst mode: ids only, as on the queue. ``force``: skip
    the fingerprint check (asked for, a dead letter open, or an older change in flight)."""

    customer_id: str
    task_id: str  # its sync_customer task: the ledger entry the batch finishes
    tracking_guid: str | None = None
    force: bool = False
    queued_at: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, raw: str) -> WaitingSync:
        return cls(**json.loads(raw))


@dataclass
class BurstRow:
    """One customer waiting for a bulk import job: what the live path would have sent."""

    customer_id: str
    task_id: str  # its sync_customer task: the ledger entry the batch finishes
    attributes: dict[str, Any]  # profile-import attributes, location included when valid
    collection: str
    linked_profile_id: str | None
    link_source: str | None
    fingerprint: str
    # The fingerprint material the next sync computes once the profile id is known (a new
    # profile: mapped with the update collection); None when linked (``fingerprint`` is it).
    next_material: dict[str, Any] | None
    location_applied: bool
    tracking_guid: str | None = None
    queued_at: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True, default=str)

    @classmethod
    def from_json(cls, raw: str) -> BurstRow:
        return cls(**json.loads(raw))


@dataclass(frozen=True)
class RowError:
    """One row a finished job (or its create request) refused."""

    row_index: int | None
    field: str | None
    code: str
    external_id: str | None = None  # from the row's original payload, when echoed
    email: str | None = None


@dataclass(frozen=True)
class RowVerdict:
    customer_id: str
    verdict: str  # IMPORTED | REFUSED | CONFLICT
    errors: tuple[FieldError, ...] = ()


def row_verdicts(rows: Sequence[BurstRow], errors: Sequence[RowError]) -> dict[str, RowVerdict]:
    """Map a job's import errors back to its customers.

    An error names its row by index when the pointer does; the original payload's
    external id (or email) must agree, else it is matched by those alone: a row whose
    index and payload disagree is never blamed for another customer's error. An identifier
    conflict goes back to the single-write path (it resolves 409s); any other refusal is
    the row's data, ``klaviyo_rejected`` with the field. Rows without an error imported.
    """
    by_external = {r.attributes.get("external_id"): r for r in rows
                   if r.attributes.get("external_id")}
    by_email = {r.attributes.get("email"): r for r in rows if r.attributes.get("email")}
    verdicts: dict[str, RowVerdict] = {}
    for error in errors:
        row = _row_of(error, rows, by_external, by_email)
        if row is None:
            continue
        if error.code in CONFLICT_CODES:
            if verdicts.get(row.customer_id) is None:
                verdicts[row.customer_id] = RowVerdict(row.customer_id, CONFLICT)
            continue
        field = error.field or "profile"
        earlier = verdicts.get(row.customer_id)
        kept = earlier.errors if earlier and earlier.verdict == REFUSED else ()
        verdicts[row.customer_id] = RowVerdict(row.customer_id, REFUSED, (*kept, FieldError(
            field, reasons.KLAVIYO_REJECTED, f"Klaviyo refused the row ({error.code})")))
    for row in rows:
        verdicts.setdefault(row.customer_id, RowVerdict(row.customer_id, IMPORTED))
    return verdicts


def _row_of(error: RowError, rows: Sequence[BurstRow], by_external: dict[Any, BurstRow],
            by_email: dict[Any, BurstRow]) -> BurstRow | None:
    if error.row_index is not None and 0 <= error.row_index < len(rows):
        row = rows[error.row_index]
        echoed = error.external_id is not None or error.email is not None
        if not echoed or (error.external_id is not None
                          and row.attributes.get("external_id") == error.external_id) or (
                error.external_id is None and row.attributes.get("email") == error.email):
            return row
    if error.external_id is not None and error.external_id in by_external:
        return by_external[error.external_id]
    if error.email is not None and error.email in by_email:
        return by_email[error.email]
    return None
