"""Reconcile benchmark: N customers already synced, 1% changed without a webhook.

    python bench/reconcile.py [--customers 100000] [--changed-percent 1] [--concurrency 4]

The "already synced" state is set up directly (links and fingerprints computed locally,
as a sync would store them), not through Klaviyo. Then, for each path, a fresh 1% of the
customers changes in the iPaaS.com sandbox and one reconcile pass runs in this process
while real workers sync what it enqueues: the filtered path (update-time filter), then
the full-scan path (the sandbox refuses the filter). Prints the pass's wall time, the time
until every change reached Klaviyo, and the Klaviyo calls made.
Target: Klaviyo calls equal to the changed customers in both paths.
Everything it starts (Redis, sandboxes, workers) stops when it ends.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from sandbox.embedded_redis import start_redis  # noqa: E402
from sandbox.local_stack import LocalStack  # noqa: E402
from sandbox.samples import customer  # noqa: E402
from worker import bootstrap  # noqa: E402
from worker.adapters.history import HistoryStore  # noqa: E402
from worker.adapters.stores import FingerprintStore, WatermarkStore  # noqa: E402
from worker.config import Settings  # noqa: E402
from worker.core.reconcile import CUSTOMERS, format_time  # noqa: E402
from worker.services.reconcile import ReconcileOptions, Reconciler  # noqa: E402
from worker.services.sync_service import build_profile_payload  # noqa: E402

LONG_AGO = datetime.now(UTC) - timedelta(days=3)
CHUNK = 5000


def synced_state(stack: LocalStack, c: bootstrap.Container, customers: int) -> None:
    """Customers in iPaaS.com, links and fingerprints as their last sync left them."""
    links: dict[str, str] = {}
    prints: dict[str, str] = {}
    fingerprints = FingerprintStore(c.redis)
    for n in range(1, customers + 1):
        # No phone: synthetic phone numbers repeat, and a shared phone is an identity
        # conflict in Klaviyo, which this benchmark is not about.
        record = customer(n, f"First{n}", f"Last{n}", f"customer{n}@example.com", None)
        record["updated_datetime"] = format_time(LONG_AGO)
        stack.ipaas.put_customer(record)
        cid = str(n)
        links[cid] = f"BENCH{n:08d}"  # replaced by a real profile for the customers that change
        prints[cid] = build_profile_payload(record, links[cid], c.mapping,
                                            c.settings.default_phone_region).fingerprint
        if len(links) >= CHUNK or n == customers:
            c.links.set_many(links)
            c.redis.hset(fingerprints.key, mapping=prints)  # type: ignore[arg-type]
            links, prints = {}, {}
    WatermarkStore(c.redis).set(CUSTOMERS, datetime.now(UTC) - timedelta(hours=1))


def change(stack: LocalStack, c: bootstrap.Container, ids: list[int]) -> None:
    """Give each a real Klaviyo profile (so its update is one call), then change it."""
    now = format_time(datetime.now(UTC))
    for n in ids:
        record = stack.ipaas.customer(str(n))
        assert record is not None
        profile_id = stack.klaviyo.add_profile(email=record["email_address"],
                                               external_id=str(n))
        c.links.set(str(n), profile_id)
        record["first_name"] = f"Changed{n}"
        record["updated_datetime"] = now
        stack.ipaas.put_customer(record)


def wait_for_syncs(c: bootstrap.Container, ids: list[int], timeout: float = 300.0) -> None:
    """Until every change is synced (its address and lists steps, which run side by side
    after the profile step, are recorded) or rejected."""
    history = HistoryStore(c.redis)
    deadline = time.monotonic() + timeout
    while True:
        pipe = c.redis.pipeline(transaction=False)
        for n in ids:
            pipe.lrange(history.key(str(n)), 0, 2)
        done = 0
        for entries in pipe.execute():
            decoded = [json.loads(e) for e in entries]
            steps = {e["step"] for e in decoded}
            if {"address", "lists"} <= steps or any(e["outcome"] == "rejected"
                                                   for e in decoded):
                done += 1
        if done == len(ids):
            return
        if time.monotonic() > deadline:
            raise SystemExit("the workers did not sync every change in time")
        time.sleep(0.2)


def run_path(stack: LocalStack, c: bootstrap.Container, ids: list[int], full_scan: bool
             ) -> dict[str, object]:
    change(stack, c, ids)
    stack.ipaas.update_filter_supported = not full_scan
    calls_before = sum(stack.klaviyo.call_counts.values())
    started = time.perf_counter()
    report = Reconciler(c).run(ReconcileOptions(page_size=100))
    pass_seconds = time.perf_counter() - started
    wait_for_syncs(c, ids)
    synced_seconds = time.perf_counter() - started
    time.sleep(1.0)  # let any stray call land before counting
    calls = sum(stack.klaviyo.call_counts.values()) - calls_before
    return {"path": report.mode + (f" ({report.fell_back})" if report.fell_back else ""),
            "pages": report.counts["pages"], "seen": report.counts["seen"],
            "enqueued": report.counts["enqueued"], "changed": len(ids),
            "pass_s": round(pass_seconds, 2), "all_synced_s": round(synced_seconds, 2),
            "klaviyo_calls": calls}


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/reconcile.py")
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--changed-percent", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    step = max(1, round(100 / args.changed_percent))
    with start_redis() as redis_server, LocalStack(redis_server.url) as stack:
        stack.ipaas.server.record_requests = False
        stack.klaviyo.server.record_requests = False
        stack.apply_env()
        c = bootstrap.build(Settings.from_env(stack.env()))
        started = time.perf_counter()
        synced_state(stack, c, args.customers)
        print(f"set up {args.customers:,} synced customers in "
              f"{time.perf_counter() - started:.1f}s", flush=True)
        stack.start_worker(concurrency=args.concurrency)
        results = [
            run_path(stack, c, list(range(step, args.customers + 1, step)), full_scan=False),
            run_path(stack, c, list(range(step // 2 or 1, args.customers + 1, step)),
                     full_scan=True),
        ]
    for result in results:
        print("  ".join(f"{k}={v}" for k, v in result.items()))
    ok = all(r["klaviyo_calls"] == r["changed"] for r in results)
    print("target met: Klaviyo calls equal the changed customers in both paths" if ok
          else "target MISSED: Klaviyo calls differ from the changed customers")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
