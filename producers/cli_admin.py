"""The operator's commands: `status ID` and the dead-letter store (`dlq list/show/replay/purge`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from producers.cli_output import EXIT_OK, EXIT_REJECTED, EXIT_USAGE, print_json


def _stores() -> tuple[Any, Any, Any, Any, Any]:
    # Imported per command: the CLI loads only what the command runs.
    # Imported per command: the CLI loads only what the command runs.
    from worker import bootstrap
    from worker.adapters.dead_letters import DeadLetterStore
    from worker.adapters.history import HistoryStore
    from worker.adapters.links import LinkStore
    from worker.adapters.scheduled import ScheduledSteps
    from worker.adapters.tombstones import Tombstones

    settings = bootstrap.settings()
    client = bootstrap.redis_client(settings)
    dead_letters = DeadLetterStore(
        client,
        retention_seconds=int(settings.dead_letter_retention_days * 86400),
        max_entries=settings.dead_letter_max_entries,
    )
    return (LinkStore(client), dead_letters, HistoryStore(client), ScheduledSteps(client),
            Tombstones(client))


def cmd_status(args: argparse.Namespace) -> int:
    if args.transaction:
        # Imported per command: the CLI loads only what the command runs.
        from producers.transaction_commands import transaction_status

        return transaction_status(str(args.id), args.json)
    # Imported per command: the CLI loads only what the command runs.
    from producers.customer_status import customer_status

    links, dead_letters, history, scheduled, tombstones = _stores()
    cid = str(args.id)
    status = customer_status(cid, links, dead_letters, history, scheduled, tombstones)
    if args.json:
        print_json(status)
        return EXIT_OK
    print(f"customer {cid}: Klaviyo profile {status['profile_id'] or '(not linked)'}")
    tombstone = tombstones.get(cid)
    if tombstone is not None:
        profile = f", profile was {tombstone.profile_id}" if tombstone.profile_id else ""
        print(f"  tombstone: deleted ({tombstone.source}) at {tombstone.at}{profile}; "
              "never synced again")
    for entry in status["dead_letters"]:
        print(f"  dead letter {entry['id']}: {entry['reason']} ({entry['attempts']} attempts)")
    for w in status["retrying"]:
        print(f"  {w['step']} step waiting to retry: attempt {w['attempt']} of "
              f"{w['max_attempts']} at {_clock(w['due_at'])}, last error: {w['last_error']}")
    if not status["history"]:
        print("  no sync history")
    for h in status["history"]:
        via = f"  (via {h['via']})" if h.get("via") else ""
        print(f"  {h['at']}  {h['step']:<8} {h['outcome']:<9} {h.get('reason') or ''}{via}")
    _print_burst_mode(cid)
    return EXIT_OK


def _print_burst_mode(customer_id: str) -> None:
    """The fleet's burst mode, when it matters: on, or this customer waiting for a job."""
    # Imported per command: the CLI loads only what the command runs.
    from worker import bootstrap
    from worker.adapters.burst_buffer import BurstBuffer

    buffer = BurstBuffer(bootstrap.redis_client(bootstrap.settings()))
    on, _, held = buffer.mode_and_backlog("profiles", customer_id)
    if on or held:
        print(f"  burst mode {'on' if on else 'off'}: {buffer.waiting()} customers waiting "
              f"for a bulk import job, {buffer.batches()} batches in flight"
              + ("; this customer is among them" if held else ""))


def _clock(epoch: float) -> str:
    # Imported per command: the CLI loads only what the command runs.
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def _cmd_dlq_select(args: argparse.Namespace, dead_letters: Any) -> int:
    # Imported per command: the CLI loads only what the command runs.
    from worker.services import replay
    from worker.tasks.replay import enqueue_replay

    try:
        entries, missing = replay.select(dead_letters, ids=args.ids or None, all=args.all,
                                         reason=args.reason, since=args.since,
                                         step=args.step)
    except replay.SelectionError as exc:
        print(f"ipaas-klaviyo dlq {args.dlq_command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for entry_id in missing:
        print(f"no dead-letter entry {entry_id}", file=sys.stderr)
    if not entries:
        print("no dead-letter entries selected")
        return EXIT_REJECTED if missing else EXIT_OK
    if args.dlq_command == "purge":
        for e in entries:
            print(f"purging {e['id']}\t{e['reason']}\t{e['last_failed_at']}")
        purged = replay.purge(dead_letters, entries)
        kept = len(entries) - purged
        left = f", {kept} left (failed again since selected, or already gone)" if kept else ""
        print(f"{purged} purged{left}")
        return EXIT_REJECTED if missing else EXIT_OK
    report = replay.replay(dead_letters, entries, enqueue=enqueue_replay)
    for line in report.lines():
        print(line)
    print(report.summary)
    return EXIT_REJECTED if missing or report.failed else EXIT_OK


def cmd_dlq(args: argparse.Namespace) -> int:
    _, dead_letters, _, _, _ = _stores()
    if args.dlq_command in ("replay", "purge"):
        return _cmd_dlq_select(args, dead_letters)
    if args.dlq_command == "list":
        entries = dead_letters.list()
        if args.json:
            print_json(entries)
            return EXIT_OK
        if not entries:
            print("dead-letter store is empty")
        for e in entries:
            fields = ",".join(err["field"] for err in e["errors"])
            print(f"{e['id']}\t{e['step']}\t{e['reason']}\t{fields}\t{e['last_failed_at']}")
        dropped = dead_letters.dropped_total()
        if dropped:
            print(f"{dropped} older entries were dropped (limit {dead_letters.max_entries}, "
                  f"kept {dead_letters.retention_seconds / 86400:g} days)")
        return EXIT_OK
    entry = dead_letters.get(args.id)
    if entry is None:
        print(f"no dead-letter entry {args.id}", file=sys.stderr)
        return EXIT_REJECTED
    if args.json:
        print_json(entry)
    else:
        for key, value in entry.items():
            if key != "errors":
                print(f"{key}: {value}")
        for err in entry["errors"]:
            print(f"  - {err['field']}: {err['reason']}: {err['message']}")
    return EXIT_OK
