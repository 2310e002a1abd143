"""Throughput and latency of the webhook receiver under gunicorn, against a real Redis.

Starts its own Redis and ``ipaas-klaviyo serve`` (default worker count for this machine),
then drives sustained load on loopback from separate client processes, each with several
keep-alive connections (``http.client`` in threads), every request a distinct customer so
nothing coalesces. Prints accepted webhooks/s, latency percentiles, the rate of a bare loop
of Celery ``apply_async`` calls in the same run (the ceiling), and checks that every accepted
webhook is in the ``profiles`` queue. Stops everything it started.

Run: ``python bench/receiver.py [--requests 20000] [--connections 6] [--processes 2]``
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

import redis

from sandbox.embedded_redis import start_redis

API_KEY = "bench-webhook-key"
QUEUE = "profiles"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def envelope(customer_id: str) -> bytes:
    guid = f"00000000-0000-4000-8000-{int(customer_id.replace('-', '')) % 10**12:012d}"
    return json.dumps({
        "id": guid, "attempt": 0,
        "notifications": [{
            "action": "update", "id": customer_id, "external_id": None, "destination": "4242",
            "scope": "customer/updated", "type": "Customer", "tracking_guid": guid,
        }],
    }).encode()


def _connection_loop(port: int, bodies: list[bytes], start: threading.Barrier,
                     latencies: list[float], failures: list[int]) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    start.wait()
    for body in bodies:
        began = time.perf_counter()
        try:
            conn.request("POST", "/webhooks/ipaas", body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            ok = response.status == 202
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            ok = False
        latencies.append(time.perf_counter() - began)
        if not ok:
            failures.append(1)
    conn.close()


def client_process(port: int, first_id: int, count: int, connections: int,
                   ready: Any, go: Any, out: Any) -> None:
    """One load-generating process: ``connections`` keep-alive connections in threads."""
    per_connection = [
        [envelope(str(first_id + i)) for i in range(c, count, connections)]
        for c in range(connections)
    ]
    start = threading.Barrier(connections + 1)
    latencies: list[float] = []
    failures: list[int] = []
    threads = [
        threading.Thread(target=_connection_loop,
                         args=(port, bodies, start, latencies, failures))
        for bodies in per_connection
    ]
    for thread in threads:
        thread.start()
    ready.set()
    go.wait()
    start.wait()
    for thread in threads:
        thread.join()
    out.put((latencies, len(failures)))


def drive(port: int, first_id: int, total: int, processes: int, connections: int
          ) -> tuple[float, list[float], int]:
    context = multiprocessing.get_context("spawn")
    go = context.Event()
    out = context.Queue()
    share = total // processes
    readies, workers = [], []
    for p in range(processes):
        ready = context.Event()
        worker = context.Process(target=client_process, args=(
            port, first_id + p * share, share, connections, ready, go, out))
        worker.start()
        readies.append(ready)
        workers.append(worker)
    for ready in readies:
        ready.wait(timeout=60)
    began = time.perf_counter()
    go.set()
    latencies: list[float] = []
    failures = 0
    for _ in workers:
        got, failed = out.get(timeout=600)
        latencies.extend(got)
        failures += failed
    elapsed = time.perf_counter() - began
    for worker in workers:
        worker.join()
    return elapsed, latencies, failures


def apply_async_ceiling(redis_url: str, count: int) -> tuple[float, float]:
    """Rate of a bare apply_async loop, and of the receiver's own claim-and-push of one
    notification, one process each."""
    from producers.intake import build_intake
    from producers.webhook_parsing import CUSTOMER, SyncRequest
    from worker.tasks.celery_app import use_redis
    from worker.tasks.steps import sync_customer

    use_redis(redis_url)
    began = time.perf_counter()
    for i in range(count):
        sync_customer.apply_async(kwargs={"customer_id": f"c{i}", "tracking_guid": None})
    bare = count / (time.perf_counter() - began)
    intake = build_intake(redis_url)
    began = time.perf_counter()
    for i in range(count):
        intake.submit([SyncRequest(0, CUSTOMER, f"r{i}", None)])
    receiver_send = count / (time.perf_counter() - began)
    return bare, receiver_send


def wait_healthy(port: int, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"receiver exited with code {process.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("receiver did not become ready")


def percentile(sorted_values: list[float], fraction: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=6, help="per client process")
    parser.add_argument("--processes", type=int, default=2, help="client processes")
    parser.add_argument("--workers", type=int, default=None, help="gunicorn workers")
    parser.add_argument("--ceiling-calls", type=int, default=5_000)
    args = parser.parse_args()

    with start_redis() as server:
        port = free_port()
        env = dict(os.environ, REDIS_URL=server.url, WEBHOOK_API_KEY=API_KEY)
        command = [sys.executable, "-m", "producers.cli", "serve",
                   "--host", "127.0.0.1", "--port", str(port)]
        if args.workers:
            command += ["--workers", str(args.workers)]
        receiver = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
        try:
            wait_healthy(port, receiver)
            client = redis.Redis.from_url(server.url)
            # Warm up every worker's connections, then measure from an empty queue.
            drive(port, 10_000_000, 400, args.processes, args.connections)
            client.flushall()
            elapsed, latencies, failures = drive(
                port, 1, args.requests, args.processes, args.connections)
            enqueued = int(client.llen(QUEUE))
        finally:
            receiver.terminate()
            receiver.wait(timeout=30)
        client.flushall()
        bare, receiver_send = apply_async_ceiling(server.url, args.ceiling_calls)
        client.close()

    accepted = len(latencies) - failures
    ordered = sorted(latencies)
    from producers.serve import default_workers
    print(f"receiver: gunicorn gthread, {args.workers or default_workers()} workers; "
          f"load: {args.processes} processes x {args.connections} keep-alive connections")
    print(f"requests {len(latencies)}  accepted {accepted}  failed {failures}  "
          f"in {elapsed:.2f} s")
    print(f"accepted webhooks/s      {accepted / elapsed:8.0f}")
    print(f"latency p50 / p99 / max  {percentile(ordered, 0.50) * 1000:6.2f} / "
          f"{percentile(ordered, 0.99) * 1000:6.2f} / {ordered[-1] * 1000:6.2f} ms"
          f"  (mean {statistics.fmean(ordered) * 1000:.2f})")
    print(f"apply_async bare loop/s  {bare:8.0f}  (receiver claim-and-push, one process: "
          f"{receiver_send:.0f}/s)")
    print(f"accepted == enqueued     {accepted == enqueued}  ({accepted} vs {enqueued})")
    return 0 if accepted == enqueued and failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
