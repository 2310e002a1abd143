"""Transaction backfill benchmark: N orders from the iPaaS.com sandbox into Klaviyo bulk
event jobs.

    python bench/transactions.py [--orders 20000] [--lines 2]

Runs the backfill path (`backfill --transactions --all`) in this process against a fresh
embedded Redis and both sandboxes on loopback (in this process too, so the figure is a
floor: the sandboxes take CPU the real service would not spend). Prints orders per second
and Klaviyo calls per order. Target: at most 1 call per 100 orders.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from sandbox.embedded_redis import start_redis  # noqa: E402
from sandbox.local_stack import LocalStack  # noqa: E402
from sandbox.transaction_samples import order  # noqa: E402
from worker import bootstrap  # noqa: E402
from worker.services.transaction_backfill import (  # noqa: E402
    TransactionBackfill,
    TransactionBackfillOptions,
)


def run(orders: int, lines: int) -> dict[str, float | int]:
    with start_redis() as redis_server, LocalStack(redis_server.url) as stack:
        stack.apply_env()
        for n in range(1, orders + 1):
            stack.ipaas.put_transaction(order(n, n % 5_000 + 1, lines=lines,
                                              email=f"c{n % 5_000 + 1}@example.com"))
        stack.klaviyo.server.record_requests = False  # keep memory flat for large runs
        backfill = TransactionBackfill(bootstrap.container(), progress_stream=io.StringIO())
        started = time.perf_counter()
        report = backfill.run(TransactionBackfillOptions(page_size=500))
        seconds = time.perf_counter() - started
        calls = sum(stack.klaviyo.call_counts.values())
        return {"orders": orders, "lines_per_order": lines, "seconds": round(seconds, 2),
                "orders_per_second": round(orders / seconds),
                "events": report.counts["events"], "klaviyo_calls": calls,
                "klaviyo_calls_per_100_orders": round(100 * calls / orders, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--lines", type=int, default=2)
    args = parser.parse_args()
    result = run(args.orders, args.lines)
    print(json.dumps(result, indent=2))
    if result["klaviyo_calls_per_100_orders"] > 1:
        raise SystemExit("target missed: more than 1 Klaviyo call per 100 orders")


if __name__ == "__main__":
    main()
