"""Burst-mode benchmark: a mass update of 20,000 customers arrives as webhooks within a few
seconds through the real receiver, against the Klaviyo sandbox enforcing Klaviyo's
*published* limits (x1, the service's limiter configured the same) with bulk import jobs
that take a few seconds to process.

    python bench/burst.py [--customers 20000] [--workers 1] [--concurrency 6]
                          [--job-seconds 3] [--threshold 500]

Prints: the time from the first webhook until every customer is in Klaviyo, and until every
customer's steps are recorded; the burst-off figure, which is the per-profile floor
(customers / 750 a minute, the L tier's steady limit; running 20,000 single writes takes
27 minutes and shows nothing more) and the ratio; Klaviyo calls per customer; 429s; limiter
and sandbox figures per tier (most requests seen in a second and a minute, against the
limits); dead letters; lost customers (no Klaviyo profile); duplicate profiles.
Goals (issue 13): under 160 s for 20,000 (10x the floor; aim 80 s), <= 0.05 Klaviyo calls
per customer, 0 lost, 0 duplicates, 0 over the limit.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sandbox.embedded_redis import start_redis
from sandbox.local_stack import LocalStack
from sandbox.samples import customer
from worker.adapters.dead_letters import DeadLetterStore
from worker.adapters.metrics import Metrics
from worker.core.rate_limits import TIERS

PER_WEBHOOK = 50  # notifications per webhook request, as iPaaS.com batches a mass update


def run(customers: int, workers: int, concurrency: int, job_seconds: float,
        threshold: int) -> dict[str, float]:
    env = {"BURST_THRESHOLD": str(threshold)}
    with start_redis() as redis_server, LocalStack(redis_server.url, extra_env=env) as stack:
        stack.apply_env()
        stack.klaviyo.server.record_requests = False
        stack.ipaas.server.record_requests = False
        stack.klaviyo.enforce_rate_limits(scale=1.0)
        stack.klaviyo.bulk_processing_seconds = job_seconds
        ids = [str(n) for n in range(1, customers + 1)]
        for n in range(1, customers + 1):
            stack.ipaas.put_customer(distinct_customer(n))
        logs = tempfile.mkdtemp(prefix="burst-")
        for w in range(workers):
            stack.start_worker(concurrency=concurrency, name=f"burst{w}",
                               log_path=os.path.join(logs, f"worker{w}.log"))
        stack.start_receiver(workers=2)
        started = time.perf_counter()

        def deliver(chunk: list[str]) -> int:
            envelope = {"id": str(uuid.uuid4()), "attempt": 0, "notifications": [
                {"scope": "customer/updated", "id": cid, "tracking_guid": str(uuid.uuid4())}
                for cid in chunk]}
            return stack.post("POST", "/webhooks/ipaas", envelope)[0]

        chunks = [ids[i:i + PER_WEBHOOK] for i in range(0, len(ids), PER_WEBHOOK)]
        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(deliver, chunks))
        arrived = time.perf_counter() - started
        assert all(s == 202 for s in statuses), set(statuses)
        try:
            in_klaviyo = wait_for_profiles(stack, customers, started, timeout=1800)
            stack.wait_for_outcomes(ids, timeout=1800)
            settled = time.perf_counter() - started
        finally:
            stack.stop_workers(signal.SIGTERM)
        profiles = stack.klaviyo.all_profiles()
        external = Counter(p["attributes"].get("external_id") for p in profiles)
        counts = stack.klaviyo.call_counts
        stats = stack.klaviyo.rate_stats()
        metrics = Metrics(stack.redis()).snapshot()
        batches = sum(metrics.get("burst_batches_total", {}).values())
        taken = sum(metrics.get("burst_batch_customers_total", {}).values())
        return {
            "arrived_s": arrived,
            "in_klaviyo_s": in_klaviyo,
            "settled_s": settled,
            "calls": sum(counts.values()),
            "calls_per_customer": sum(counts.values()) / customers,
            "by_endpoint": ", ".join(f"{op} {n}" for op, n in counts.most_common(6) if n),
            "single_writes": counts["create_or_update_profile"],
            "jobs": counts["bulk_import_profiles"],
            "batches": batches,
            "per_batch": taken / batches if batches else 0.0,
            "throttled": sum(t["throttled"] for t in stats.values()),
            "stats": stats,  # type: ignore[dict-item]
            "dead_letters": DeadLetterStore(stack.redis()).count(),
            "lost": sum(1 for cid in ids if external[cid] == 0),
            "duplicates": sum(n - 1 for n in external.values() if n > 1),
        }


def distinct_customer(n: int) -> dict:
    """A valid customer whose email and phone no other customer shares (the sandbox's
    synthetic customers reuse phone numbers every 10,000, which Klaviyo would resolve to
    one profile: identifier conflicts, not a mass update)."""
    return customer(n, f"First{n}", f"Last{n}", f"customer{n}@example.com", f"20155{n:05d}")


def wait_for_profiles(stack: LocalStack, customers: int, started: float,
                      timeout: float) -> float:
    """Seconds from the first webhook until the sandbox holds a profile per customer."""
    deadline = time.perf_counter() + timeout
    while stack.klaviyo.profile_count() < customers:
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{stack.klaviyo.profile_count()} of {customers} in Klaviyo")
        time.sleep(0.25)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=6)
    parser.add_argument("--job-seconds", type=float, default=3.0,
                        help="least time the sandbox takes to process a bulk import job")
    parser.add_argument("--threshold", type=int, default=500, help="BURST_THRESHOLD")
    args = parser.parse_args()
    steady = TIERS["L"][1]
    floor = args.customers / steady * 60
    print(f"{args.customers} customers as webhooks ({PER_WEBHOOK} per request), "
          f"{args.workers} worker(s) x {args.concurrency}; Klaviyo's published limits (x1); "
          f"jobs take >= {args.job_seconds:g} s; BURST_THRESHOLD {args.threshold}")
    r = run(args.customers, args.workers, args.concurrency, args.job_seconds, args.threshold)
    print(f"webhooks delivered in {r['arrived_s']:.1f} s")
    print(f"burst on : every customer in Klaviyo after {r['in_klaviyo_s']:.1f} s "
          f"(every step recorded after {r['settled_s']:.1f} s)")
    print(f"burst off: per-profile floor {floor:.0f} s ({args.customers} / {steady} a minute)"
          f" | ratio {floor / r['in_klaviyo_s']:.1f}x")
    print(f"Klaviyo calls {r['calls']:.0f} = {r['calls_per_customer']:.4f} per customer "
          f"(bulk import jobs {r['jobs']:.0f}, single writes {r['single_writes']:.0f}; "
          f"{r['batches']:.0f} batches, {r['per_batch']:.0f} customers per batch)")
    print(f"  by endpoint: {r['by_endpoint']}")
    for tier, t in sorted(r["stats"].items()):  # type: ignore[attr-defined]
        print(f"  tier {tier}: max {t['max_seen_per_second']}/s of {t['burst_limit']}, "
              f"{t['max_seen_per_minute']}/min of {t['steady_limit']}; "
              f"throttled {t['throttled']} of {t['seen']}")
    print(f"429s {r['throttled']:.0f} | dead letters {r['dead_letters']:.0f} | "
          f"lost {r['lost']:.0f} | duplicate profiles {r['duplicates']:.0f}")


if __name__ == "__main__":
    main()
