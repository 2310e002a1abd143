"""Reconciliation rules: which listed record needs a sync, and where a pass stands.

Pure: times and fingerprints come in as values. The adapters keep the state (watermark,
checkpoint) in Redis and the producer pages through iPaaS.com.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

CUSTOMERS, TRANSACTIONS = "customers", "transactions"
FILTERED, FULL_SCAN = "filtered", "full_scan"

SYNC, UNCHANGED = "sync", "unchanged"

# iPaaS.com stamps update times with its own clock; the next pass starts this far before
# the moment this one started, so a record stamped by a clock running a little behind ours
# is listed again rather than missed (a repeat costs nothing: its fingerprint matches).
CLOCK_SKEW_MARGIN = timedelta(minutes=2)

COUNTERS = ("pages", "seen", "enqueued", "unchanged", "already_queued")


def parse_time(value: Any) -> datetime | None:
    """An ISO-8601 time as an aware UTC datetime (no offset means UTC); None if unusable."""
    if value is None or value == "":
        return None
    text = str(value).strip().replace("Z", "+00:00").replace("z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def format_time(moment: datetime) -> str:
    """The wire and storage form: UTC, milliseconds, ``Z``."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def decide(
    updated_at: datetime | None,
    since: datetime,
    *,
    mode: str,
    current_fingerprints: Collection[str] = (),
    stored_fingerprint: str | None = None,
) -> str:
    """SYNC or UNCHANGED for one listed record.

    A stored fingerprint equal to one the record produces now means Klaviyo already holds
    exactly this: nothing to do, whatever the update time says, and a different one means
    a change. When there is nothing to compare (never synced live, backfilled, or invalid
    now) the update time decides. The filtered path also skips records the server should
    not have listed (stamped at or before ``since``): belt and braces against a loose filter.
    """
    older = updated_at is not None and updated_at <= since
    if mode == FILTERED and older:
        return UNCHANGED
    if current_fingerprints and stored_fingerprint:
        return UNCHANGED if stored_fingerprint in current_fingerprints else SYNC
    return UNCHANGED if older else SYNC


def decide_transaction(
    updated_at: datetime | None,
    since: datetime,
    *,
    mode: str,
    placed_sent: bool,
    status_events: bool,
) -> str:
    """SYNC or UNCHANGED for one listed transaction.

    Order events are append-only: a transaction whose Placed Order went out has nothing
    left to send, unless status events (cancelled, refunded) are on. Otherwise the update
    time decides, so one that failed for good (dead-lettered) is not retried every pass.
    """
    older = updated_at is not None and updated_at <= since
    if placed_sent and not status_events:
        return UNCHANGED
    return UNCHANGED if older else SYNC


def next_watermark(started_at: datetime, previous: datetime | None) -> datetime:
    """Where the next pass starts: this pass's start less the skew margin, never backwards."""
    candidate = started_at - CLOCK_SKEW_MARGIN
    return candidate if previous is None or candidate > previous else previous


@dataclass
class PassState:
    """One pass of one kind: what it lists, how far it got and what it found so far.

    Saved after every page, so a pass that fails half-way resumes at ``next_page`` with
    the same ``since`` and start time; only a finished pass moves the watermark.
    """

    kind: str
    since: datetime
    started_at: datetime
    mode: str
    page_size: int
    next_page: int = 1
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))

    def add(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "since": format_time(self.since),
            "started_at": format_time(self.started_at),
            "mode": self.mode,
            "page_size": self.page_size,
            "next_page": self.next_page,
            "counts": dict(self.counts),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PassState | None:
        """The saved state, or None when it is unreadable (the pass then starts over)."""
        since, started = parse_time(data.get("since")), parse_time(data.get("started_at"))
        if since is None or started is None or data.get("mode") not in (FILTERED, FULL_SCAN):
            return None
        try:
            counts = {str(k): int(v) for k, v in dict(data.get("counts") or {}).items()}
            return cls(str(data["kind"]), since, started, str(data["mode"]),
                       int(data["page_size"]), int(data["next_page"]),
                       {**dict.fromkeys(COUNTERS, 0), **counts})
        except (KeyError, TypeError, ValueError):
            return None
