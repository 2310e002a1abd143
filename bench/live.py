"""Live-path benchmark: 2,000 customers arriving as webhooks, each with a list assignment,
against the Klaviyo sandbox enforcing Klaviyo's limits scaled up ten times (the service's
limiter configured the same; `--scale` changes the factor), once with subscription batching
and once without.

    python bench/live.py [--customers 2000] [--workers 1] [--concurrency 8]

Prints, for each run: profile writes per minute as a fraction of the configured ceiling
(L tier steady limit; target >= 0.9), measured from the first profile write to the last,
over the whole run (first webhook to last outcome) and, when writes lasted a minute or
more, in the busiest 60-second window (the one that shows whether Klaviyo's steady limit
was used to the full: a run shorter than two minutes can average above the limit, since
the minute is a sliding window); Klaviyo calls per customer (target <= 1.1); throttled
responses (429s from the sandbox); dead letters (target 0); wall time.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sandbox.__main__ import synthetic_customer
from sandbox.embedded_redis import start_redis
from sandbox.local_stack import LocalStack
from worker.adapters.dead_letters import DeadLetterStore
from worker.core.rate_limits import TIERS, scaled_limits


def run(customers: int, workers: int, concurrency: int, batching: bool, scale: float
        ) -> dict[str, float]:
    env = {"KLAVIYO_RATE_LIMITS": scaled_limits(scale),
           "SUBSCRIPTION_BATCH_WINDOW_SECONDS": "2" if batching else "0"}
    with start_redis() as redis_server, LocalStack(redis_server.url, extra_env=env) as stack:
        stack.apply_env()
        stack.klaviyo.server.record_requests = False
        stack.ipaas.server.record_requests = False
        stack.klaviyo.enforce_rate_limits(scale=scale)
        write_times: list[float] = []

        def note_write(request: object, operation: str) -> None:
            if operation == "create_or_update_profile":
                write_times.append(time.perf_counter())

        stack.klaviyo.interceptors.append(note_write)
        ids = [str(n) for n in range(1, customers + 1)]
        for n in range(1, customers + 1):
            stack.ipaas.put_customer(synthetic_customer(n))
        logs = tempfile.mkdtemp(prefix="live-")
        for w in range(workers):
            stack.start_worker(concurrency=concurrency, name=f"live{w}",
                               log_path=os.path.join(logs, f"worker{w}.log"))
        stack.start_receiver(workers=2)
        started = time.perf_counter()

        def deliver(cid: str) -> int:
            envelope = {"id": str(uuid.uuid4()), "attempt": 0, "notifications": [
                {"scope": "customer/created", "id": cid, "tracking_guid": str(uuid.uuid4())}]}
            return stack.post("POST", "/webhooks/ipaas", envelope)[0]

        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(deliver, ids))
        assert all(s == 202 for s in statuses), set(statuses)
        try:
            stack.wait_for_outcomes(ids, timeout=1800)
        finally:
            stack.stop_workers(signal.SIGTERM)
        wall = time.perf_counter() - started
        counts = stack.klaviyo.call_counts
        writes = counts["create_or_update_profile"]
        calls = sum(counts.values())
        ceiling_per_minute = TIERS["L"][1] * scale
        stats = stack.klaviyo.rate_stats()
        # The write rate while writes were flowing: from the first profile write to the last
        # (the ramp of webhook delivery before and the list batches after are not writes).
        span = max(write_times[-1] - write_times[0], 1e-9)
        busiest, start = 0, 0  # most writes inside any 60-second window
        for end, at in enumerate(write_times):
            while at - write_times[start] >= 60.0:
                start += 1
            busiest = max(busiest, end - start + 1)
        return {
            "busiest_minute": busiest / ceiling_per_minute,
            "span_s": span,
            "wall_s": wall,
            "writes": writes,
            "fraction": ((len(write_times) - 1) / span * 60) / ceiling_per_minute,
            "wall_fraction": (writes / wall * 60) / ceiling_per_minute,
            "calls_per_customer": calls / customers,
            "throttled": sum(t["throttled"] for t in stats.values()),
            "dead_letters": DeadLetterStore(stack.redis()).count(),
            "subscribe_calls": counts["bulk_subscribe_profiles"],
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--scale", type=float, default=10.0,
                        help="Klaviyo's published limits times this, in sandbox and limiter")
    args = parser.parse_args()
    print(f"{args.customers} customers as webhooks, {args.workers} worker(s) x "
          f"{args.concurrency}; Klaviyo limits x{args.scale:g} (profile writes ceiling "
          f"{TIERS['L'][1] * args.scale:g}/min)")
    for label, batching in (("batching on", True), ("batching off", False)):
        r = run(args.customers, args.workers, args.concurrency, batching, args.scale)
        busiest = (f"busiest minute {r['busiest_minute']:.2f} of the ceiling"
                   if r["span_s"] >= 60 else "writes took under a minute")
        print(f"{label:>12}: {r['wall_s']:6.1f} s | profile writes {r['writes']} at "
              f"{r['fraction']:.2f} of the ceiling while writing ({r['wall_fraction']:.2f} over "
              f"the whole run; {busiest}) | Klaviyo calls/customer "
              f"{r['calls_per_customer']:.3f} (subscribe calls {r['subscribe_calls']}) | "
              f"throttled {r['throttled']} | dead letters {r['dead_letters']}")


if __name__ == "__main__":
    main()
