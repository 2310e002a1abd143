"""Dead-letter replay and purge, modelled on rq's failed-job registry and ``requeue``.

Replay sends an entry's step back through its own Celery task as a fresh task, so the retry
budget starts over, and deletes the entry only after the enqueue returned — and only while
its last failure is still the one that was selected, so a newer failure is never lost.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from worker.adapters.dead_letters import STEPS, TRANSACTION_STEP, iso_utc, parse_iso, utc_now
from worker.core import reasons

Entry = dict[str, Any]
Enqueue = Callable[[Entry], str]

_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_SPAN_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# Steps whose task takes (customer_id, profile_id, collection); others re-run the pipeline.
_STEP_TASKS = {"address": "apply_address", "lists": "apply_subscriptions"}


class SelectionError(ValueError):
    """The selectors are missing, contradictory or malformed: a usage error."""


class NotReplayable(Exception):
    """No task can run this entry's step again."""


class DeadLetters(Protocol):
    def get(self, entry_id: str) -> Entry | None: ...

    def list(
        self, *, reason: str | None = None, since: str | None = None, limit: int | None = None,
        step: str | None = None,
    ) -> list[Entry]: ...

    def remove(self, entry_id: str, *, if_last_failed_at: str | None = None) -> bool: ...


def parse_since(text: str, now: datetime | None = None) -> str:
    """An ISO-8601 date or datetime (no offset means UTC), or a span back from now such as
    ``30m``, ``2h``, ``7d``; returned as an ISO-8601 UTC time."""
    span = _SPAN.match(text)
    if span:
        seconds = float(span.group(1)) * _SPAN_SECONDS[span.group(2).lower()]
        return iso_utc((now or utc_now()) - timedelta(seconds=seconds))
    try:
        return iso_utc(parse_iso(text.strip()))
    except ValueError:
        raise SelectionError(
            f"--since {text!r}: expected an ISO-8601 date or time, or a span like 30m, 2h, 7d"
        ) from None


def check_selectors(
    ids: list[str] | None, all: bool, reason: str | None, since: str | None,
    step: str | None = None,
) -> None:
    """Ids name entries exactly; ``--reason``, ``--step`` and ``--since`` narrow together;
    ``--all`` is needed to touch everything and takes nothing else."""
    filters = reason is not None or since is not None or step is not None
    if ids and (all or filters):
        raise SelectionError(
            "give entry ids or a selector (--all, --reason, --step, --since), not both")
    if all and filters:
        raise SelectionError("--all takes no --reason, --step or --since")
    if not ids and not all and not filters:
        raise SelectionError(
            "say which entries: ID..., --reason CODE, --step STEP, --since TIME or --all")
    if reason is not None and reason not in reasons.ALL:
        raise SelectionError(f"unknown reason code {reason!r}")
    if step is not None and step not in STEPS:
        raise SelectionError(f"unknown step {step!r}")


def select(
    store: DeadLetters,
    *,
    ids: list[str] | None = None,
    all: bool = False,
    reason: str | None = None,
    since: str | None = None,
    now: datetime | None = None,
    step: str | None = None,
) -> tuple[list[Entry], list[str]]:
    """(entries selected, ids given that name no entry). Raises SelectionError."""
    check_selectors(ids, all, reason, since, step)
    if ids:
        entries: list[Entry] = []
        missing: list[str] = []
        for entry_id in dict.fromkeys(ids):  # each id once, in the order given
            entry = store.get(entry_id)
            if entry is None:
                missing.append(entry_id)
            else:
                entries.append(entry)
        return entries, missing
    low = None if since is None else parse_since(since, now)
    return store.list(reason=reason, since=low, step=step), []


@dataclass
class ReplayReport:
    replayed: list[tuple[str, str]] = field(default_factory=list)  # (entry id, task id)
    # Enqueued, but the entry failed again after it was selected: that newer failure stays.
    kept: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (entry id, why)

    def lines(self) -> list[str]:
        kept = set(self.kept)
        out = []
        for entry_id, task_id in self.replayed:
            note = " (failed again meanwhile: entry kept)" if entry_id in kept else ""
            out.append(f"replayed {entry_id} as task {task_id}{note}")
        out += [f"not replayed {entry_id}: {why}" for entry_id, why in self.failed]
        return out

    def __repr__(self) -> str:
        return f"<ReplayReport: {self.summary}>"

    @property
    def summary(self) -> str:
        text = f"{len(self.replayed)} replayed, {len(self.failed)} not replayed"
        return text + (f", {len(self.kept)} kept with a newer failure" if self.kept else "")


def replay(store: DeadLetters, entries: list[Entry], *, enqueue: Enqueue) -> ReplayReport:
    report = ReplayReport()
    for entry in entries:
        try:
            task_id = enqueue(entry)
        except NotReplayable as exc:
            report.failed.append((entry["id"], str(exc)))
            continue
        except Exception as exc:  # the broker is down or refused: the entry stays
            report.failed.append((entry["id"], f"enqueue failed ({type(exc).__name__})"))
            continue
        report.replayed.append((entry["id"], task_id))
        removed = store.remove(entry["id"], if_last_failed_at=entry["last_failed_at"])
        if not removed and store.get(entry["id"]) is not None:
            report.kept.append(entry["id"])
    return report


def purge(store: DeadLetters, entries: list[Entry]) -> int:
    """Delete the entries as selected; one that failed again since is kept. Returns how
    many were deleted."""
    return sum(
        store.remove(entry["id"], if_last_failed_at=entry["last_failed_at"])
        for entry in entries
    )


def task_call(entry: Entry) -> tuple[str, dict[str, str]]:
    """(task name, kwargs without tracking guid) that runs the entry's step again: an
    address or lists entry with its ids goes to its own task, anything else re-runs the
    whole customer pipeline."""
    customer_id = entry.get("customer_id")
    if entry["step"] == TRANSACTION_STEP:
        if not entry.get("transaction_id"):
            raise NotReplayable("a transaction entry without a transaction id")
        kwargs = {"transaction_id": str(entry["transaction_id"])}
        if customer_id:
            kwargs["customer_id"] = str(customer_id)
        return "sync_transaction", kwargs
    if not customer_id:
        raise NotReplayable(f"no task replays a {entry['step']} entry")
    if entry["step"] == "erase":  # an erasure that gave up: run it again
        return "forget_customer", {"customer_id": customer_id, "source": "forget"}
    context = entry.get("context") or {}
    task = _STEP_TASKS.get(entry["step"])
    if task and context.get("profile_id") and context.get("collection"):
        return task, {"customer_id": customer_id, "profile_id": context["profile_id"],
                      "collection": context["collection"]}
    return "sync_customer", {"customer_id": customer_id}
