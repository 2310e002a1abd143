"""Backfill benchmark: N customers from the iPaaS.com sandbox into the Klaviyo sandbox.

    python bench/backfill.py [--customers 100000] [--small 10000]

Each size runs `ipaas-klaviyo backfill --all` as a fresh process against a fresh Redis
and fresh sandboxes (in a process of their own, so they do not count towards the
backfill's memory), and prints wall time, rate and the backfill process's peak RSS.
Targets: 100,000 customers in under 60 s, peak memory under 300 MB, and the 100,000 run's
peak within 10% of the 10,000 run's.

The service's own rate limiter stays on. By default it is configured for an account with
Klaviyo's published limits scaled up ten times (`--limits-scale`, as bench/live.py does):
at the published limits the 1,000 `get_profiles` calls that read 100,000 links back need
80 s of L-tier budget (750/min) on their own, whatever this machine does.
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

from sandbox.embedded_redis import start_redis  # noqa: E402
from worker.core.rate_limits import scaled_limits  # noqa: E402


def run_once(customers: int, limits_scale: float) -> dict[str, float | str]:
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
                       IPAAS_SYSTEM_ID=info["ipaas_system_id"],
                       KLAVIYO_RATE_LIMITS=scaled_limits(limits_scale))
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
    parser.add_argument("--limits-scale", type=float, default=10.0)
    args = parser.parse_args()
    print(f"rate limiter: Klaviyo's published limits x {args.limits_scale:g}")
    results = [run_once(args.small, args.limits_scale),
               run_once(args.customers, args.limits_scale)]
    for r in results:
        print(f"backfill: {r['customers']:>7,} customers in {r['wall_s']:6.1f} s = "
              f"{r['rate']:8,.0f}/s, peak RSS {r['peak_mb']:6.1f} MB   [{r['summary']}]")
    small, large = results
    growth = (float(large["peak_mb"]) - float(small["peak_mb"])) / float(small["peak_mb"])
    print(f"peak memory growth {small['customers']:,} -> {large['customers']:,}: "
          f"{growth:+.1%} (target within 10%)")


if __name__ == "__main__":
    main()
