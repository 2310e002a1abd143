"""consent-sync benchmark: N linked profiles suppressed in Klaviyo since the watermark.

    python bench/consent.py [--profiles 10000] [--already-false-percent 20]

Set up directly: N customers in the iPaaS.com sandbox (SubscribeProfile "true", or "false"
for a share of them), a Klaviyo profile for each linked in our store, and a suppression on
each (unsubscribes, spam complaints and bounces, three to a second, as Klaviyo stamps them
to the second). Then one consent-sync pass runs in this process against both sandboxes and
real Redis. Prints the pass's time, the Klaviyo calls (target: at most one per 100 profiles
read) and the iPaaS.com calls (target: one read per customer, one update per customer that
changes, none for those already false), then a second pass (target: nothing new).
Everything it starts (Redis, sandboxes) stops when it ends.
"""

from __future__ import annotations

import argparse
import math
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
from worker.config import Settings  # noqa: E402
from worker.services.consent_sync import ConsentSync  # noqa: E402

REASONS = ("UNSUBSCRIBE",) * 7 + ("SPAM_COMPLAINT",) * 2 + ("HARD_BOUNCE",)


def set_up(stack: LocalStack, c: bootstrap.Container, profiles: int, false_every: int
           ) -> tuple[datetime, int]:
    """Returns the watermark to start from and how many customers already say false."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    links: dict[str, str] = {}
    already_false = 0
    for n in range(1, profiles + 1):
        value = "true"
        if false_every and n % false_every == 0:
            value, already_false = "false", already_false + 1
        stack.ipaas.put_customer(customer(n, f"F{n}", f"L{n}", f"consent{n}@example.com",
                                          None, custom_fields={"SubscribeProfile": value}))
        profile_id = stack.klaviyo.add_profile(email=f"consent{n}@example.com")
        links[str(n)] = profile_id
        stamp = (start + timedelta(seconds=1 + n // 3)).isoformat()
        stack.klaviyo.suppress(profile_id, REASONS[n % len(REASONS)], timestamp=stamp)
    c.links.set_many(links)
    return start, already_false


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/consent.py")
    parser.add_argument("--profiles", type=int, default=10_000)
    parser.add_argument("--already-false-percent", type=float, default=20.0)
    args = parser.parse_args()
    false_every = round(100 / args.already_false_percent) if args.already_false_percent else 0
    with start_redis() as redis_server, LocalStack(redis_server.url) as stack:
        stack.ipaas.server.record_requests = False
        stack.klaviyo.server.record_requests = False
        stack.apply_env()
        c = bootstrap.build(Settings.from_env(stack.env()))
        started = time.perf_counter()
        since, already_false = set_up(stack, c, args.profiles, false_every)
        print(f"set up {args.profiles:,} linked, suppressed profiles ({already_false:,} "
              f"customers already false) in {time.perf_counter() - started:.1f}s", flush=True)
        stack.klaviyo.call_counts.clear()
        stack.ipaas.call_counts.clear()
        started = time.perf_counter()
        report = ConsentSync(c).run(since)
        seconds = time.perf_counter() - started
        klaviyo_calls = sum(stack.klaviyo.call_counts.values())
        reads = stack.ipaas.call_counts["get_customer"]
        updates = stack.ipaas.call_counts["update_customer"]
        ipaas_calls = sum(stack.ipaas.call_counts.values())
        print(report.summary())
        changed = args.profiles - already_false
        print(f"pass_s={seconds:.2f}  profiles_per_s={args.profiles / seconds:,.0f}  "
              f"klaviyo_calls={klaviyo_calls}  ipaas_calls={ipaas_calls} "
              f"(reads={reads} updates={updates})  changed={changed}")
        stack.klaviyo.call_counts.clear()
        stack.ipaas.call_counts.clear()
        again = ConsentSync(c).run()
        print(f"second pass: {again.summary()}  klaviyo_calls="
              f"{sum(stack.klaviyo.call_counts.values())}  ipaas_calls="
              f"{sum(stack.ipaas.call_counts.values())}")
    ok = (klaviyo_calls <= math.ceil(args.profiles / 100) and reads == args.profiles
          and updates == changed and ipaas_calls == reads + updates
          and report.counts["written_back"] == changed
          and report.counts["already_false"] == already_false and again.counts["seen"] == 0)
    print("target met: one Klaviyo call per 100 profiles; one read per customer, one update "
          "per customer that changed, none for those already false" if ok
          else "target MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
