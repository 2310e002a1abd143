"""The overview page's sections, each read through a store or service of the CLI.

A section is a title and rows (label, value, note), or a small table. ``SECTIONS`` lists
them in page order: a new fact (say burst mode, or the consent-sync watermark) is one more
function appended there, and the template shows it without change. A section whose read
fails shows the failure's kind in place of its rows, so one bad read never hides the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from producers.console.services import ConsoleServices
from producers.shell import queue_depths
from worker.adapters.burst_buffer import BurstBuffer
from worker.core.reconcile import CUSTOMERS, TRANSACTIONS, format_time
from worker.services.consent_sync import CURSOR_NAME as CONSENT_CURSOR
from worker.services.consent_sync import LAST_PASS_NAME as CONSENT_LAST_PASS
from worker.services.reconcile import last_pass_name

logger = logging.getLogger("ipaas_klaviyo.console")

Row = tuple[str, Any, str]


@dataclass
class Section:
    title: str
    rows: list[Row] = field(default_factory=list)
    headers: list[str] = field(default_factory=list)  # set: ``table`` holds the rows
    table: list[list[Any]] = field(default_factory=list)
    error: str | None = None


def redis_section(s: ConsoleServices) -> Section:
    s.redis.ping()
    return Section("Redis", [("reachable", "yes", "")])


def queues_section(s: ConsoleServices) -> Section:
    depths = queue_depths(s.redis)
    rows: list[Row] = [(name, depths.get(name, 0), "messages waiting")
                       for name in ("profiles", "addresses", "lists", "transactions")]
    rows.append(("held by workers", depths.get("unacked", 0), "running or prefetched"))
    rows.append(("waiting to retry", s.scheduled.retrying(), "steps in the scheduled set"))
    rows.append(("open steps", s.ledger.open_count(), "sent, no outcome yet (task ledger)"))
    return Section("Queues and steps", rows)


def dead_letters_section(s: ConsoleServices) -> Section:
    rows: list[Row] = [("total", s.dead_letters.count(), "")]
    rows += [(f"reason {code}", n, "") for code, n in
             sorted(s.pages.counts_by_reason().items(), key=lambda kv: -kv[1])]
    rows += [(f"step {step}", n, "") for step, n in s.pages.counts_by_step().items()]
    dropped = s.dead_letters.dropped_total()
    if dropped:
        rows.append(("dropped by trimming", dropped, "age or count limit"))
    return Section("Dead letters", rows)


def limiter_section(s: ConsoleServices) -> Section:
    table = []
    for tier, (burst, steady) in s.limiter.limits.items():
        second, minute = s.limiter.usage(tier)
        table.append([tier, f"{second} / {burst}", f"{minute} / {steady}",
                      f"{100 * minute // steady}%"])
    return Section("Klaviyo limiter (this account)",
                   headers=["tier", "last second / burst", "last minute / steady", "used"],
                   table=table)


def reconcile_section(s: ConsoleServices) -> Section:
    rows: list[Row] = []
    for kind in (CUSTOMERS, TRANSACTIONS):
        mark = s.watermarks.get(kind)
        rows.append((f"{kind} watermark", format_time(mark) if mark else "none yet", ""))
        last = s.checkpoints.load(last_pass_name(kind))
        if last:
            counts = last.get("counts") or {}
            rows.append((f"{kind} last pass", last.get("finished_at", "?"),
                         f"{last.get('mode', '')}: seen {counts.get('seen', 0)}, "
                         f"enqueued {counts.get('enqueued', 0)}"))
        running = s.checkpoints.load(f"reconcile:{kind}")
        if running:
            rows.append((f"{kind} pass under way", f"page {running.get('next_page', '?')}",
                         f"started {running.get('started_at', '?')}"))
    return Section("Reconciliation", rows)


def consent_sync_section(s: ConsoleServices) -> Section:
    cursor = s.checkpoints.load(CONSENT_CURSOR)
    rows: list[Row] = [("watermark", cursor.get("watermark", "?") if cursor else "none yet",
                        "suppressions up to here are written back")]
    last = s.checkpoints.load(CONSENT_LAST_PASS)
    if last:
        counts = last.get("counts") or {}
        rows.append(("last pass", last.get("finished_at", "?"),
                     f"seen {counts.get('seen', 0)}, written back "
                     f"{counts.get('written_back', 0)}, unlinked {counts.get('unlinked', 0)}, "
                     f"failed {counts.get('failed', 0)}"))
    rows.append(("customers erased (tombstones)", s.tombstones.count(), ""))
    return Section("Consent back and deletions", rows)


def burst_section(s: ConsoleServices) -> Section:
    burst = BurstBuffer(s.redis)
    on, backlog, _ = burst.mode_and_backlog("profiles")
    return Section("Burst mode", [
        ("burst mode", "on" if on else "off",
         f"threshold {s.settings.burst_threshold} queued syncs (0: never)"),
        ("backlog", backlog, "queued syncs, customers waiting for or in a bulk import job"),
        ("batches in flight", burst.batches(), ""),
        ("customers in the last batch", burst.last_batch_customers(), ""),
    ])


# Page order: a new fact is one more function here.
SECTIONS: list[Callable[[ConsoleServices], Section]] = [
    redis_section, queues_section, burst_section, dead_letters_section, limiter_section,
    reconcile_section, consent_sync_section,
]


def sections(s: ConsoleServices) -> list[Section]:
    out = []
    for build in SECTIONS:
        try:
            out.append(build(s))
        except Exception as exc:  # Redis down or a malformed record: say so, show the rest
            logger.warning("overview section %s failed: %s", build.__name__,
                           type(exc).__name__)
            title = build.__name__.removesuffix("_section").replace("_", " ").capitalize()
            out.append(Section(title, error=type(exc).__name__))
    return out


def now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
