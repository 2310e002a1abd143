"""Run both sandboxes as a process of their own (for benchmarks and manual trials).

    python -m sandbox [--customers N] [--lists]

Prints one JSON line with the two base URLs and the credentials, then serves until its
standard input closes or it is terminated.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from sandbox.ipaas_sandbox import IpaasSandbox
from sandbox.klaviyo_sandbox import KlaviyoSandbox
from sandbox.samples import DOUBLE_OPT_IN_LIST, SEED_LIST, customer


def synthetic_customer(n: int) -> dict:
    """A seed-shaped, valid customer number ``n`` (ids start at 1)."""
    return customer(n, f"First{n}", f"Last{n}", f"customer{n}@example.com",
                    f"201555{n % 10000:04d}" if n % 4 else None)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox")
    parser.add_argument("--customers", type=int, default=0,
                        help="load this many synthetic customers into the iPaaS.com sandbox")
    args = parser.parse_args()
    klaviyo, ipaas = KlaviyoSandbox().start(), IpaasSandbox().start()
    klaviyo.server.record_requests = False  # a long run must not keep every request
    ipaas.server.record_requests = False
    klaviyo.add_list(SEED_LIST, "single_opt_in")
    klaviyo.add_list(DOUBLE_OPT_IN_LIST, "double_opt_in")
    for n in range(1, args.customers + 1):
        ipaas.put_customer(synthetic_customer(n))
    print(json.dumps({"klaviyo_url": klaviyo.url, "klaviyo_api_key": klaviyo.api_key,
                      "ipaas_url": ipaas.url, "ipaas_token": ipaas.token,
                      "ipaas_system_id": ipaas.system_id}), flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def wait_for_stdin_to_close() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=wait_for_stdin_to_close, daemon=True).start()
    stop.wait()
    klaviyo.stop()
    ipaas.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
