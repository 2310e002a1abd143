"""The CLI's transaction commands: ``sync --transaction``, ``backfill --transactions`` and
``status --transaction`` (wired in producers/cli.py)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

EXIT_OK, EXIT_REJECTED = 0, 1


def sync_transactions(args: argparse.Namespace) -> int:
    # Imported per command: the CLI loads only what the command runs.
    from worker import bootstrap

    if args.dry_run:
        return _dry_run([str(t) for t in args.ids])
    from worker.tasks.dispatch import send_step
    from worker.tasks.transactions import sync_transaction

    bootstrap.check_configuration()
    results = [(str(t), send_step(sync_transaction, {"transaction_id": str(t)}))
               for t in args.ids]
    if not args.wait:
        for tid, result in results:
            print(f"{tid}\tqueued\t{result.id}")
        return EXIT_OK
    rejected = False
    for tid, result in results:
        try:
            outcome = dict(result.get(timeout=args.timeout, interval=0.05))
        except Exception as exc:
            if "TimeoutError" not in type(exc).__name__:
                raise
            print(f"{tid}\ttimeout\tstill running after {args.timeout:.0f}s")
            rejected = True
            continue
        rejected |= outcome["outcome"] == "rejected"
        detail = outcome.get("reason") or ", ".join(outcome.get("events") or [])
        print(f"{tid}\ttransaction\t{outcome['outcome']}\t{detail}")
    return EXIT_REJECTED if rejected else EXIT_OK


def _dry_run(transaction_ids: list[str]) -> int:
    """The events each transaction would send, and its validation result; writes nothing."""
    # Imported per command: the CLI loads only what the command runs.
    from datetime import UTC, datetime

    from worker import bootstrap
    from worker.core.errors import FinalError
    from worker.core.events import event_attributes
    from worker.core.transactions import validate_transaction
    from worker.services.transaction_service import events_due

    c = bootstrap.container()
    settings = c.transaction_settings
    reports: list[dict[str, Any]] = []
    for tid in transaction_ids:
        report: dict[str, Any] = {"transaction_id": tid}
        try:
            transaction = c.ipaas.get_transaction(tid)
        except FinalError as exc:
            reports.append({**report, "valid": False, "reason": exc.reason})
            continue
        errors = validate_transaction(transaction,
                                      reject_duplicate_skus=settings.reject_duplicate_skus)
        report["valid"] = not errors
        report["errors"] = [e.as_dict() for e in errors]
        if not errors:
            due = events_due(transaction, c.sent_orders.sent(tid), c.mapping, settings,
                             datetime.now(UTC))
            report["events"] = [event_attributes(e, {"id": "<linked profile>"}) for _, e in due]
        reports.append(report)
    print(json.dumps(reports if len(reports) > 1 else reports[0], indent=2, default=str))
    return EXIT_OK if all(r["valid"] for r in reports) else EXIT_REJECTED


def backfill_transactions(args: argparse.Namespace) -> int:
    # Imported per command: the CLI loads only what the command runs.
    from worker import bootstrap
    from worker.services.transaction_backfill import TransactionBackfill, TransactionBackfillOptions

    c = bootstrap.container()
    options = TransactionBackfillOptions(path=args.file, restart=args.restart,
                                         limit=args.limit, page_size=args.page_size)
    report = TransactionBackfill(c, progress_stream=sys.stderr).run(options)
    if report.resumed_after:
        print(f"resumed after transaction #{report.resumed_after} (checkpoint)")
    print(f"{report.summary} | {report.requests} bulk event requests")
    if report.rejected_ids:
        print(f"{len(report.rejected_ids)} transactions rejected: see `ipaas-klaviyo dlq list`")
    return EXIT_REJECTED if report.counts["rejected"] else EXIT_OK


def transaction_status(transaction_id: str, as_json: bool) -> int:
    # Imported per command: the CLI loads only what the command runs.
    from worker import bootstrap
    from worker.adapters.scheduled import ScheduledSteps
    from worker.tasks.transactions import history_subject

    c = bootstrap.container()
    entry = c.dead_letters.get(f"transaction:{transaction_id}")
    waiting = ScheduledSteps(c.redis).waiting("transaction", transaction_id)
    status: dict[str, Any] = {
        "transaction_id": transaction_id,
        "events_sent": sorted(c.sent_orders.sent(transaction_id)),
        "dead_letters": [entry] if entry else [],
        "retrying": [waiting.as_dict()] if waiting else [],
        "history": c.history.recent(history_subject(transaction_id)),
    }
    if as_json:
        print(json.dumps(status, indent=2, default=str))
        return EXIT_OK
    sent = ", ".join(status["events_sent"]) or "none"
    print(f"transaction {transaction_id}: order events sent: {sent}")
    if entry:
        print(f"  dead letter {entry['id']}: {entry['reason']} ({entry['attempts']} attempts)")
    if waiting:
        print(f"  waiting to retry: attempt {waiting.attempt} of {waiting.max_attempts}, "
              f"due {waiting.due_at:.0f} (epoch s), last error: {waiting.last_error}")
    if not status["history"]:
        print("  no sync history")
    for h in status["history"]:
        print(f"  {h['at']}  {h['step']:<11} {h['outcome']:<9} {h.get('reason') or ''}")
    return EXIT_OK
