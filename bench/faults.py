"""Fault benchmark: drain 2,000 customers through real workers, with and without faults,
and with every worker killed in the middle of the fault mix.

    python bench/faults.py [--customers 2000] [--workers 2] [--concurrency 4] [--only kill]

The fault mix on Klaviyo's profile endpoints: 30% 503, 10% 429 (Retry-After 1 s), 1%
dropped connections and 0-20 ms of added latency. The Klaviyo sandbox enforces Klaviyo's
limits scaled up ten times and the service's limiter is configured the same. Prints, for
each run: customers lost (neither synced nor dead-lettered; target 0), duplicate profiles
(target 0), requests over the limit (429s the sandbox's limiter sent; target 0), and the
time to drain. The kill run uses the documented defaults for retries, the visibility timeout,
the task time limit and the lost-task grace (the other runs shorten retries to measure the
drain): once half the customers reached an outcome every worker tree is SIGKILLed, new workers
start, and it prints the time from the kill until every customer reached an outcome.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from producers.manual_sync import enqueue_customer
from sandbox.__main__ import synthetic_customer
from sandbox.embedded_redis import start_redis
from sandbox.klaviyo_faults import PROFILE_OPERATIONS, RandomFaults
from sandbox.local_stack import LocalStack, kill_tree
from worker.adapters.dead_letters import DeadLetterStore
from worker.adapters.history import HistoryStore
from worker.adapters.scheduled import ScheduledSteps
from worker.core.rate_limits import scaled_limits

SCALE = 10


DEFAULT_RETRIES = {"RETRY_BASE_SECONDS": "2", "RETRY_CAP_SECONDS": "600",
                   "SYNC_MAX_ATTEMPTS": "8"}




def run(customers: int, workers: int, concurrency: int, faults: bool,
        kill: bool = False) -> dict[str, float]:
    env = {"KLAVIYO_RATE_LIMITS": scaled_limits(SCALE), "SYNC_MAX_ATTEMPTS": "20",
           "RETRY_CAP_SECONDS": "2"}
    if kill:
        env = {"KLAVIYO_RATE_LIMITS": scaled_limits(SCALE), **DEFAULT_RETRIES}
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
        recovered = 0.0
        try:
            if kill:
                recovered = _kill_mid_run(stack, ids, workers, concurrency, logs)
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
            "recovered_s": recovered,
        }


def _kill_mid_run(stack: LocalStack, ids: list[str], workers: int, concurrency: int,
                  logs: str) -> float:
    """Kill every worker once half the customers reached an outcome; start new ones; the
    seconds from the kill until every customer reached one."""
    client = stack.redis()
    history = HistoryStore(client)

    def finished() -> int:
        pipe = client.pipeline(transaction=False)
        for cid in ids:
            pipe.lrange(history.key(cid), 0, -1)
        return sum(any(json.loads(item)["outcome"] != "retrying" for item in raw)
                   for raw in pipe.execute())

    while finished() < len(ids) // 2:
        time.sleep(0.2)
    for process in list(stack.workers):
        kill_tree(process.pid)
        process.wait()
        stack.workers.remove(process)
    killed = time.perf_counter()
    print(f"  killed every worker with {finished()} of {len(ids)} customers at an outcome, "
          f"{ScheduledSteps(client).retrying()} steps waiting to retry", flush=True)
    for w in range(workers):
        stack.start_worker(concurrency=concurrency, name=f"after{w}",
                           log_path=os.path.join(logs, f"after{w}.log"))
    stack.wait_for_outcomes(ids, timeout=3600)
    return time.perf_counter() - killed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--only", choices=("none", "faults", "kill"), default=None,
                        help="run one scenario: no faults, the fault mix, or the kill")
    args = parser.parse_args()
    print(f"{args.customers} customers, {args.workers} workers x {args.concurrency}, "
          f"Klaviyo limits x{SCALE} in the sandbox and the limiter")
    scenarios = (("no faults", "none", False, False), ("fault mix", "faults", True, False),
                 ("kill", "kill", True, True))
    for label, name, faults, kill in scenarios:
        if args.only not in (None, name):
            continue
        r = run(args.customers, args.workers, args.concurrency, faults, kill)
        print(f"{label:>9}: drained in {r['drain_s']:7.1f} s | synced {r['synced']} "
              f"dead-lettered {r['dead_lettered']} | lost {r['lost']} | duplicate profiles "
              f"{r['duplicates']} | requests over the limit {r['over_limit']} | "
              f"faults injected {r['injected']}", flush=True)
        if kill:
            print(f"     kill: every customer at an outcome {r['recovered_s']:.1f} s after the "
                  "kill (defaults: retries in Redis, 90 s visibility timeout)")


if __name__ == "__main__":
    main()
