"""The ``reconcile`` and ``beat`` commands.

``reconcile --once`` runs one pass and exits: 0 when it finished, 1 when it failed (its
checkpoint stays and the next run resumes), 3 when another reconcile of the same kind holds
the lock (nothing was done). Without ``--once`` it runs a pass every
RECONCILE_INTERVAL_SECONDS until interrupted; a busy lock or a failed pass then only
waits for the next interval.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import datetime
from typing import TextIO

from worker.core.errors import SyncError
from worker.core.reconcile import CUSTOMERS, TRANSACTIONS, parse_time

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_BUSY = 0, 1, 2, 3


def parse_since_option(text: str) -> datetime:
    """``--since``: an ISO-8601 time (no offset means UTC) or a span back from now (30m,
    2h, 7d). Raises ValueError with a usage message."""
    # Imported per command: the CLI loads only what the command runs.
    from worker.services.replay import SelectionError, parse_since

    try:
        moment = parse_time(parse_since(text))
    except SelectionError as exc:
        raise ValueError(str(exc)) from None
    if moment is None:
        raise ValueError(f"--since {text!r}: not a time")
    return moment


def reconcile_command(*, since: str | None, once: bool, transactions: bool,
                      full_scan: bool = False, out: TextIO = sys.stdout,
                      err: TextIO = sys.stderr,
                      sleep: Callable[[float], None] = time.sleep) -> int:
    # Imported per command: the CLI loads only what the command runs.
    from worker import bootstrap
    from worker.services.reconcile import ReconcileBusy, ReconcileOptions, Reconciler

    try:
        since_at = parse_since_option(since) if since else None
    except ValueError as exc:
        print(f"ipaas-klaviyo reconcile: {exc}", file=err)
        return EXIT_USAGE
    c = bootstrap.container()
    kind = TRANSACTIONS if transactions else CUSTOMERS
    reconciler = Reconciler(c, progress_stream=err)
    if transactions and not c.settings.generate_events:
        print("ipaas-klaviyo reconcile: --transactions needs GENERATE_EVENTS on", file=err)
        return EXIT_USAGE
    if kind not in reconciler.kinds:
        print(f"ipaas-klaviyo reconcile: this build cannot reconcile {kind}", file=err)
        return EXIT_USAGE
    options = ReconcileOptions.from_settings(c.settings, kind, since_at)
    options.full_scan = options.full_scan or full_scan
    try:
        while True:
            try:
                report = reconciler.run(options)
                print(report.summary(), file=out, flush=True)
                code = EXIT_OK
            except ReconcileBusy:
                print(f"another reconcile of {kind} is running; this one did nothing",
                      file=out, flush=True)
                code = EXIT_BUSY
            except Exception as exc:
                # Our errors name the operation and status only; others show their type.
                detail = f": {exc}" if isinstance(exc, SyncError) else ""
                print(f"reconcile {kind} failed: {type(exc).__name__}{detail} "
                      "(the next run resumes from its last page)", file=err, flush=True)
                code = EXIT_FAILED
            if once:
                return code
            options.since = None  # later passes go on from the watermark
            sleep(c.settings.reconcile_interval_seconds)
    except KeyboardInterrupt:
        return EXIT_OK


def beat_command(extra: list[str]) -> int:
    """Celery beat with the reconcile schedule (celeryconfig.beat_schedule)."""
    # Imported per command: the CLI loads only what the command runs.
    from worker import bootstrap
    from worker.tasks.celery_app import app

    bootstrap.check_configuration()
    app.start(["beat", "--loglevel=INFO", *extra])
    return EXIT_OK
