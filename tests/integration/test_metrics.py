"""Fleet-wide metrics: counters in a real (throwaway) Redis, the HttpAdapter hook against a
real loopback server, the exposition parsed back as Prometheus reads it, /metrics on the
receiver, ``ipaas-klaviyo metrics`` as a process, and a real worker counting its syncs."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
import redis
import requests
from prometheus_client.parser import text_string_to_metric_families

from producers.manual_sync import enqueue_customer, wait_for_steps
from producers.metrics_server import exposition
from producers.receiver import ReceiverSettings, WebhookReceiver
from sandbox.httpserver import Response, SandboxServer
from sandbox.local_stack import LocalStack
from sandbox.samples import sample_cases
from tests.support import free_port
from worker.adapters.dead_letters import DeadLetterStore
from worker.adapters.http import HttpAdapter
from worker.adapters.metrics import CountingLimiter, Metrics
from worker.adapters.task_ledger import LedgerEntry, TaskLedger
from worker.config import Secret
from worker.core.errors import RetryableError, ThrottledError

pytestmark = pytest.mark.integration

KEY = "webhook-key"


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text exposition by (name, sorted labels)."""
    out = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


# --- the counters -----------------------------------------------------------------------------


def test_counters_accumulate_per_label_set(redis_client: redis.Redis) -> None:
    metrics = Metrics(redis_client)
    metrics.incr("syncs_total", {"step": "profile", "outcome": "created"})
    metrics.incr("syncs_total", {"outcome": "created", "step": "profile"}, 2)  # order-free
    metrics.incr_many([("syncs_total", {"step": "lists", "outcome": "synced"}, 1),
                       ("retries_total", {"step": "address"}, 3),
                       ("retries_total", {"step": "lists"}, 0)])  # zero: not even a field
    snap = metrics.snapshot()
    assert snap["syncs_total"] == {
        (("outcome", "created"), ("step", "profile")): 3,
        (("outcome", "synced"), ("step", "lists")): 1,
    }
    assert snap["retries_total"] == {(("step", "address"),): 3}
    assert snap["webhooks_total"] == {}  # known counters appear even before any count


def test_counting_never_fails_the_work_when_redis_is_gone() -> None:
    dead = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.2)
    Metrics(dead).incr("syncs_total", {"step": "profile", "outcome": "created"})  # no raise
    with pytest.raises(redis.RedisError):
        Metrics(dead).snapshot()


def test_http_hook_counts_calls_by_status_and_429s_as_throttled(
    redis_client: redis.Redis,
) -> None:
    metrics = Metrics(redis_client)
    server = SandboxServer()
    server.route("POST", "/ok", lambda r: Response(201, {"data": {}}))
    server.route("GET", "/busy", lambda r: Response(429, {"errors": []},
                                                    headers={"Retry-After": "1"}))
    with server:
        adapter = HttpAdapter(requests.Session(), timeout=2, on_response=metrics.http_counter(
            "klaviyo_calls_total", throttled_source="klaviyo"))
        adapter.send("create_profile", "POST", f"{server.url}/ok", headers={}, json_body={})
        adapter.send("create_profile", "POST", f"{server.url}/ok", headers={}, json_body={})
        with pytest.raises(ThrottledError):
            adapter.send("get_lists", "GET", f"{server.url}/busy", headers={})
    with pytest.raises(RetryableError):
        adapter.send("get_lists", "GET", f"http://127.0.0.1:{free_port()}/", headers={})
    snap = metrics.snapshot()
    assert snap["klaviyo_calls_total"] == {
        (("endpoint", "create_profile"), ("status", "201")): 2,
        (("endpoint", "get_lists"), ("status", "429")): 1,
        (("endpoint", "get_lists"), ("status", "error")): 1,
    }
    assert snap["throttled_total"] == {(("source", "klaviyo"),): 1}


class _NoSlots:
    """A limiter that never has a slot (the protocol RateLimitedHttp uses)."""

    def acquire(self, tier: str, max_wait: float | None = None) -> float:
        raise ThrottledError("no slot", retry_after=2.0)

    def penalize(self, tier: str, seconds: float) -> None:
        pass


def test_limiter_refusals_count_as_throttled_by_the_limiter(redis_client: redis.Redis) -> None:
    metrics = Metrics(redis_client)
    limiter = CountingLimiter(_NoSlots(), metrics)
    for _ in range(2):
        with pytest.raises(ThrottledError):
            limiter.acquire("M")
    assert metrics.snapshot()["throttled_total"] == {(("source", "limiter"),): 2}


# --- the exposition ---------------------------------------------------------------------------


def test_exposition_has_counters_queue_depths_and_dead_letters(
    redis_client: redis.Redis,
) -> None:
    metrics = Metrics(redis_client)
    metrics.incr("webhooks_total", {"result": "accepted"}, 5)
    metrics.incr("klaviyo_calls_total", {"endpoint": "create_profile", "status": "201"})
    redis_client.lpush("profiles", "m1", "m2")
    redis_client.lpush("lists", "m3")
    DeadLetterStore(redis_client).record(customer_id="7", step="profile",
                                         reason="invalid_email", errors=[], last_error="x")
    TaskLedger(redis_client).record(
        "t1", LedgerEntry("ipaas_klaviyo.sync_customer", "profiles", {"customer_id": "8"}), 0.0)
    got = samples(exposition(redis_client))
    assert got[("ipaas_klaviyo_redis_up", ())] == 1
    assert got[("ipaas_klaviyo_webhooks_total", (("result", "accepted"),))] == 5
    assert got[("ipaas_klaviyo_klaviyo_calls_total",
                (("endpoint", "create_profile"), ("status", "201")))] == 1
    assert got[("ipaas_klaviyo_queue_depth", (("queue", "profiles"),))] == 2
    assert got[("ipaas_klaviyo_queue_depth", (("queue", "lists"),))] == 1
    assert got[("ipaas_klaviyo_queue_depth", (("queue", "addresses"),))] == 0
    assert got[("ipaas_klaviyo_dead_letters", ())] == 1
    assert got[("ipaas_klaviyo_dead_letters_dropped_total", ())] == 0
    assert got[("ipaas_klaviyo_open_steps", ())] == 1


def test_exposition_reports_redis_down_instead_of_failing() -> None:
    dead = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.2)
    got = samples(exposition(dead))
    assert got == {("ipaas_klaviyo_redis_up", ()): 0}


# --- served by the receiver -------------------------------------------------------------------


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve(app: Any) -> Iterator[int]:
    server = make_server("127.0.0.1", 0, app, server_class=_ThreadingServer,
                         handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("token", ["", "scrape-token"])
def test_receiver_counts_webhooks_and_serves_metrics(redis_url: str, token: str) -> None:
    settings = ReceiverSettings(Secret(KEY), redis_url, metrics_token=Secret(token))
    for port in serve(WebhookReceiver(settings)):
        body = json.dumps({"notifications": [
            {"scope": "customer/updated", "id": "1"},
            {"scope": "customer/updated", "id": "1"},  # coalesces with the first
            {"scope": "product/updated", "id": "9"},  # ignored
            {"scope": "customer/updated"},  # rejected: no id
        ]})
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("POST", "/webhooks/ipaas", body=body,
                     headers={"Authorization": f"Bearer {KEY}",
                              "Content-Type": "application/json"})
        assert conn.getresponse().status == 400  # one rejected, the rest queued
        conn.close()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("POST", "/webhooks/ipaas", body=body, headers={"Authorization": "Bearer no"})
        assert conn.getresponse().status == 401
        conn.close()

        auth = {"Authorization": f"Bearer {token}"} if token else {}
        status, text = get(port, "/metrics", auth)
        assert status == 200
        got = samples(text)
        for result, n in (("accepted", 1), ("coalesced", 1), ("ignored", 1), ("rejected", 1)):
            assert got[("ipaas_klaviyo_webhooks_total", (("result", result),))] == n
        assert got[("ipaas_klaviyo_webhook_requests_total", (("status", "400"),))] == 1
        assert got[("ipaas_klaviyo_webhook_requests_total", (("status", "401"),))] == 1
        assert got[("ipaas_klaviyo_queue_depth", (("queue", "profiles"),))] == 1
        if token:
            assert get(port, "/metrics")[0] == 401
            assert get(port, "/metrics", {"Authorization": "Bearer wrong"})[0] == 401


# --- ipaas-klaviyo metrics --------------------------------------------------------------------


def wait_for_port(process: subprocess.Popen[bytes], port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}")


def test_standalone_exporter_serves_the_same_metrics(redis_url: str,
                                                     redis_client: redis.Redis) -> None:
    Metrics(redis_client).incr("retries_total", {"step": "profile"}, 4)
    port = free_port()
    env = {**os.environ, "REDIS_URL": redis_url, "METRICS_TOKEN": "t0k"}
    process = subprocess.Popen(
        [sys.executable, "-m", "producers.cli", "metrics", "--host", "127.0.0.1",
         "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port(process, port)
        assert get(port, "/metrics")[0] == 401
        status, text = get(port, "/metrics", {"Authorization": "Bearer t0k"})
        assert status == 200
        assert samples(text)[("ipaas_klaviyo_retries_total", (("step", "profile"),))] == 4
    finally:
        process.terminate()
        process.wait(timeout=10)


# --- a real worker counts what it does --------------------------------------------------------


def test_worker_counts_steps_and_klaviyo_calls(stack: LocalStack) -> None:
    case = next(c for c in sample_cases() if c.expect_profile in ("created", "updated"))
    stack.seed([case])
    outcomes = wait_for_steps(enqueue_customer(case.customer_id), timeout=60)
    client = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    got = samples(exposition(client))
    # The lists step may be settled by a batched flush (worker.tasks.subscriptions), which counts
    # its own outcomes; the per-customer steps are counted by run_step.
    counted = [o for o in outcomes if o["step"] in ("profile", "address")]
    assert {o["step"] for o in counted} == {"profile", "address"}
    for o in counted:
        key = ("ipaas_klaviyo_syncs_total", (("outcome", o["outcome"]), ("step", o["step"])))
        assert got.get(key, 0) == 1, key
    klaviyo_calls = {labels: v for (name, labels), v in got.items()
                     if name == "ipaas_klaviyo_klaviyo_calls_total"}
    ipaas_calls = {labels: v for (name, labels), v in got.items()
                   if name == "ipaas_klaviyo_ipaas_calls_total"}
    assert sum(klaviyo_calls.values()) >= 1
    assert sum(ipaas_calls.values()) >= 1
    # What the sandbox saw is what was counted (Klaviyo answered every call).
    assert sum(klaviyo_calls.values()) == len(stack.klaviyo.server.requests)
