"""Operator console: dead-letter pages over a full store (100,000 entries).

    python bench/console_pages.py [--entries 100000]

Fills a fresh embedded Redis with N dead letters (four steps, several reasons), then times
through the console itself (Flask's test client, signed in) the first and the last page,
a reason filter, reason + step, and the confirmation count of "purge all matching", each
the median of 5 requests. Target: every page under 250 ms at 100,000 entries.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from sandbox.embedded_redis import start_redis  # noqa: E402

REASONS = ("invalid_email", "invalid_phone", "invalid_country", "retries_exhausted")
STEPS = ("profile", "address", "lists", "transaction")


def fill(url: str, n: int) -> float:
    import redis

    from worker.adapters.dead_letters import DeadLetterStore

    store = DeadLetterStore(redis.Redis.from_url(url, decode_responses=True))
    started = time.perf_counter()
    for i in range(n):
        step = STEPS[i % 4]
        store.record(customer_id=str(i), step=step, reason=REASONS[(i // 4) % 4], errors=[],
                     transaction_id=str(i) if step == "transaction" else None)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=100_000)
    args = parser.parse_args()
    with start_redis() as server:
        print(f"filled {args.entries:,} entries in {fill(server.url, args.entries):.1f} s")
        from producers.console import create_app
        from worker.config import Settings

        app = create_app(Settings.from_env({"REDIS_URL": server.url,
                                            "ADMIN_PASSWORD": "bench"}))
        client = app.test_client()
        token = re.search(r'name="csrf_token" value="([^"]+)"',
                          client.get("/login").get_data(as_text=True))
        assert token
        client.post("/login", data={"password": "bench", "csrf_token": token.group(1)})
        home = client.get("/").get_data(as_text=True)
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', home)
        assert csrf
        last = args.entries // 50 + 1
        cases = {
            "overview": ("GET", "/", None),
            "page 1": ("GET", "/dead-letters", None),
            f"page {last} (last)": ("GET", f"/dead-letters?page={last}", None),
            "reason filter, page 100": ("GET", "/dead-letters?reason=invalid_phone&page=100",
                                        None),
            "reason + step filter": ("GET", "/dead-letters?reason=invalid_phone&step=lists",
                                     None),
            "confirm purge all matching": ("POST", "/dead-letters/confirm", {
                "action": "purge", "scope": "matching", "reason": "invalid_email",
                "csrf_token": csrf.group(1)}),
        }
        for name, (method, url, data) in cases.items():
            times = []
            for _ in range(5):
                started = time.perf_counter()
                answer = client.open(url, method=method, data=data)
                times.append(time.perf_counter() - started)
                assert answer.status_code == 200, (name, answer.status_code)
            print(f"{name:<30} median {1000 * statistics.median(times):7.1f} ms")


if __name__ == "__main__":
    main()
