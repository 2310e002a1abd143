"""The ``consent-sync`` and ``forget`` commands.

``consent-sync --once`` runs one pass in this process and prints its summary (seen, written
back, already false, unlinked, failed): exit 0 when it finished, 1 when it stopped early
(the cursor stays and the next run resumes), 3 when another pass holds the lock. Without
``--once`` it runs a pass every CONSENT_SYNC_INTERVAL_SECONDS until interrupted.

``forget ID...`` tombstones the customers at once, then queues the erase step of each
(unlink; with KLAVIYO_DELETE_PROFILES=true, delete the Klaviyo profile), retried by the
worker like any step. Without ``--yes`` it asks first, and refuses when nobody can answer.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from worker.core.errors import SyncError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_BUSY = 0, 1, 2, 3


def consent_sync_command(*, since: str | None, once: bool, out: TextIO = sys.stdout,
                         err: TextIO = sys.stderr,
                         sleep: Callable[[float], None] = time.sleep) -> int:
    # Imported per command: the CLI loads only what the command runs.
    from producers.reconcile_command import parse_since_option

    # Imported per command: the CLI loads only what the command runs.
    from worker import bootstrap
    from worker.services.consent_sync import ConsentSync, ConsentSyncBusy

    try:
        since_at = parse_since_option(since) if since else None
    except ValueError as exc:
        print(f"ipaas-klaviyo consent-sync: {exc}", file=err)
        return EXIT_USAGE
    c = bootstrap.container()
    consent = ConsentSync(c)
    try:
        while True:
            try:
                report = consent.run(since_at)
                print(report.summary(), file=out, flush=True)
                code = EXIT_OK if report.finished else EXIT_FAILED
            except ConsentSyncBusy:
                print("another consent-sync is running; this one did nothing", file=out,
                      flush=True)
                code = EXIT_BUSY
            except Exception as exc:
                detail = f": {exc}" if isinstance(exc, SyncError) else ""
                print(f"consent-sync failed: {type(exc).__name__}{detail} (the next run "
                      "resumes where this one stopped)", file=err, flush=True)
                code = EXIT_FAILED
            if once:
                return code
            since_at = None  # later passes go on from the watermark
            sleep(c.settings.consent_sync_interval_seconds)
    except KeyboardInterrupt:
        return EXIT_OK


def forget_command(ids: list[str], *, yes: bool, stdin: TextIO = sys.stdin,
                   out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    # Imported per command: the CLI loads only what the command runs.
    from worker import bootstrap
    from worker.adapters.tombstones import FORGET, Tombstones
    from worker.tasks.consent import forget_customer
    from worker.tasks.dispatch import send_step

    ids = [str(i).strip() for i in ids if str(i).strip()]
    if not ids:
        print("ipaas-klaviyo forget: give at least one customer id", file=err)
        return EXIT_USAGE
    settings, client = bootstrap.settings_and_redis()
    what = ("delete their Klaviyo profiles" if settings.klaviyo_delete_profiles
            else "unlink their Klaviyo profiles (KLAVIYO_DELETE_PROFILES is off: the "
                 "profiles stay in Klaviyo)")
    if not yes:
        if not stdin.isatty():
            print("ipaas-klaviyo forget: refusing without --yes: no terminal to confirm on",
                  file=err)
            return EXIT_USAGE
        print(f"Forget {len(ids)} customer(s) for good: stop every sync of them and {what}.",
              file=out)
        print("Type 'yes' to go on: ", end="", file=out, flush=True)
        if stdin.readline().strip().lower() != "yes":
            print("nothing done", file=out)
            return EXIT_FAILED
    tombstones = Tombstones(client)
    for customer_id in ids:
        new = tombstones.add(customer_id, FORGET)
        result = send_step(forget_customer, {"customer_id": customer_id, "source": FORGET})
        print(f"{customer_id}\t{'tombstoned' if new else 'already tombstoned'}\t"
              f"erase queued {result.id}", file=out)
    return EXIT_OK
