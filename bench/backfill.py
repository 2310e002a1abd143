"""Backfill benchmark: N customers from the iPaaS.com sandbox into the Klaviyo sandbox.

    python bench/backfill.py [--customers 100000] [--small 10000]

Each size runs `ipaas-klaviyo backfill --all` as a fresh process against a fresh Redis
and fresh sandboxes (in a process of their own, so they do not count towards the
backfill's memory), and prints wall time, rate and the backfill process's peak RSS.
Targets: 100,000 customers in under 60 s, peak memory under 300 MB, and the 100,000 run's
peak within 10% of the 10,000 run's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from producers.embedded_redis import start_redis  # noqa: E402


def run_once(customers: int) -> dict[str, float | str]:
    with start_redis() as redis_server:
        sandbox = subprocess.Popen([sys.executable, "-m", "sandbox", "--customers",
                                    str(customers)], cwd=ROOT, stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, text=True)
        try:
            assert sandbox.stdout is not None
            info = json.loads(sandbox.stdout.readline())
            env = dict(os.environ, REDIS_URL=redis_server.url,
                       KLAVIYO_BASE_URL=info["klaviyo_url"],
                       KLAVIYO_API_KEY=info["klaviyo_api_key"],
                       IPAAS_BASE_URL=info["ipaas_url"], IPAAS_API_TOKEN=info["ipaas_token"],
                       IPAAS_SYSTEM_ID=info["ipaas_system_id"])
            started = time.perf_counter()
            backfill = subprocess.Popen([sys.executable, "-m", "producers.cli", "backfill",
                                         "--all"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True)
            _, status, usage = os.wait4(backfill.pid, 0)
            wall = time.perf_counter() - started
            assert backfill.stdout is not None
            output = backfill.stdout.read().strip().splitlines()
            if os.waitstatus_to_exitcode(status) != 0:
                raise SystemExit(f"backfill failed: {output}")
        finally:
            assert sandbox.stdin is not None
            sandbox.stdin.close()
            sandbox.wait(timeout=30)
    return {"customers": customers, "wall_s": wall, "rate": customers / wall,
            "peak_mb": usage.ru_maxrss / 1024, "summary": output[-1] if output else ""}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=10_000)
    args = parser.parse_args()
    results = [run_once(args.small), run_once(args.customers)]
    for r in results:
        print(f"backfill: {r['customers']:>7,} customers in {r['wall_s']:6.1f} s = "
              f"{r['rate']:8,.0f}/s, peak RSS {r['peak_mb']:6.1f} MB   [{r['summary']}]")
    small, large = results
    growth = (float(large["peak_mb"]) - float(small["peak_mb"])) / float(small["peak_mb"])
    print(f"peak memory growth {small['customers']:,} -> {large['customers']:,}: "
          f"{growth:+.1%} (target within 10%)")


if __name__ == "__main__":
    main()
