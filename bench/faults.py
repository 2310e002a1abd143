"""Fault benchmark: drain 2,000 customers through real workers, with and without faults.

    python bench/faults.py [--customers 2000] [--workers 2] [--concurrency 4]

The fault mix on Klaviyo's profile endpoints: 30% 503, 10% 429 (Retry-After 1 s), 1%
dropped connections and 0-20 ms of added latency. The Klaviyo sandbox enforces Klaviyo's
limits scaled up ten times and the service's limiter is configured the same. Prints, for
each run: customers lost (neither synced nor dead-lettered; target 0), duplicate profiles
(target 0), requests over the limit (429s the sandbox's limiter sent; target 0), and the
time to drain.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from producers.embedded_redis import start_redis
from producers.local_stack import LocalStack
from producers.manual_sync import enqueue_customer
from sandbox.__main__ import synthetic_customer
from sandbox.klaviyo_faults import PROFILE_OPERATIONS, RandomFaults
from worker.adapters.dead_letters import DeadLetterStore
from worker.core.rate_limits import scaled_limits

SCALE = 10


def run(customers: int, workers: int, concurrency: int, faults: bool) -> dict[str, float]:
    env = {"KLAVIYO_RATE_LIMITS": scaled_limits(SCALE), "SYNC_MAX_ATTEMPTS": "20",
           "RETRY_CAP_SECONDS": "2"}
    with start_redis() as redis_server, LocalStack(redis_server.url, extra_env=env) as stack:
        stack.apply_env()
        stack.klaviyo.server.record_requests = False
        stack.ipaas.server.record_requests = False
        stack.klaviyo.enforce_rate_limits(scale=SCALE)
        injected = None
        if faults:
            injected = RandomFaults(seed=2026, operations=PROFILE_OPERATIONS,
                                    error_rates={503: 0.30, 429: 0.10}, retry_after=1,
                                    latency=(0.0, 0.02), drop_rate=0.01)
            stack.klaviyo.interceptors.append(injected)
        ids = [str(n) for n in range(1, customers + 1)]
        for n in range(1, customers + 1):
            stack.ipaas.put_customer(synthetic_customer(n))
        logs = tempfile.mkdtemp(prefix="faults-")
        for w in range(workers):
            stack.start_worker(concurrency=concurrency, name=f"bench{w}",
                               log_path=os.path.join(logs, f"worker{w}.log"))
        started = time.perf_counter()
        for cid in ids:
            enqueue_customer(cid)
        try:
            outcomes = stack.wait_for_outcomes(ids, timeout=3600)
        finally:
            stack.stop_workers(signal.SIGTERM)
        drained = time.perf_counter() - started
        dead = {e["customer_id"] for e in DeadLetterStore(stack.redis()).list()}
        synced = {cid for cid, steps in outcomes.items()
                  if steps["profile"]["outcome"] in ("created", "updated")}
        lost = len(set(ids) - synced - dead)
        external = [p["attributes"]["external_id"] for p in stack.klaviyo.all_profiles()]
        stats = stack.klaviyo.rate_stats()
        return {
            "drain_s": drained,
            "synced": len(synced),
            "dead_lettered": len(dead),
            "lost": lost,
            "duplicates": len(external) - len(set(external)),
            "over_limit": sum(tier["throttled"] for tier in stats.values()),
            "injected": sum(injected.injected.values()) if injected else 0,
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    print(f"{args.customers} customers, {args.workers} workers x {args.concurrency}, "
          f"Klaviyo limits x{SCALE} in the sandbox and the limiter")
    for label, faults in (("no faults", False), ("fault mix", True)):
        r = run(args.customers, args.workers, args.concurrency, faults)
        print(f"{label:>9}: drained in {r['drain_s']:7.1f} s | synced {r['synced']} "
              f"dead-lettered {r['dead_lettered']} | lost {r['lost']} | duplicate profiles "
              f"{r['duplicates']} | requests over the limit {r['over_limit']} | "
              f"faults injected {r['injected']}")


if __name__ == "__main__":
    main()
