"""Webhook to Klaviyo profile: the real ``ipaas-klaviyo serve`` (gunicorn) in a subprocess,
a real Celery worker (the ``stack`` fixture), real Redis, and both sandboxes."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sandbox.local_stack import LocalStack
from sandbox.samples import sample_cases
from tests.support import free_port
from worker.adapters.history import HistoryStore
from worker.adapters.links import LinkStore

pytestmark = pytest.mark.integration

KEY = "e2e-webhook-key"
CUSTOMER_ID = "1001"  # the seed's valid customer


def request(port: int, method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
        conn.request(method, path, None if body is None else json.dumps(body), headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


@dataclass
class Served:
    port: int
    log: Path


@pytest.fixture(scope="module")
def served(stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    stack.seed([case for case in sample_cases() if case.customer_id == CUSTOMER_ID])
    port = free_port()
    env = {**stack.env(), "WEBHOOK_API_KEY": KEY}
    log = tmp_path_factory.mktemp("receiver") / "receiver.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "producers.cli", "serve", "--host", "127.0.0.1",
             "--port", str(port), "--workers", "2"],
            env=env, stdout=subprocess.DEVNULL, stderr=out,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if request(port, "GET", "/readyz")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "receiver did not become ready"
            time.sleep(0.1)
        yield Served(port, log)
    finally:
        process.terminate()
        process.wait(timeout=30)


def wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def profile_syncs(stack: LocalStack) -> list[dict[str, Any]]:
    history = HistoryStore(stack.redis()).recent(CUSTOMER_ID, limit=50)
    return [h for h in history if h["step"] == "profile" and h["outcome"] != "retrying"]


def test_webhook_through_gunicorn_and_worker_lands_a_klaviyo_profile(
    stack: LocalStack, served: Served
) -> None:
    status, body = request(served.port, "GET", "/healthz")
    assert (status, body) == (200, {"status": "ok", "redis": "reachable"})
    envelope = {"id": "env-e2e", "attempt": 0, "notifications": [{
        "action": "update", "id": CUSTOMER_ID, "destination": "4242",
        "scope": "Customer/Updated/Debug", "type": "Customer", "tracking_guid": "guid-e2e",
    }]}
    status, body = request(served.port, "POST", "/webhooks/ipaas", envelope)
    assert (status, body["accepted"]) == (202, 1)

    wait_for(lambda: LinkStore(stack.redis()).get(CUSTOMER_ID) is not None)
    profile = stack.klaviyo.profile(LinkStore(stack.redis()).get(CUSTOMER_ID) or "")
    assert profile is not None
    assert profile["attributes"]["external_id"] == CUSTOMER_ID
    wait_for(lambda: len(profile_syncs(stack)) == 1)
    assert profile_syncs(stack)[0]["tracking_guid"] == "guid-e2e"
    # The task cleared its pending marker as it started.
    assert not stack.redis().exists(f"ipk:pending:customer:{CUSTOMER_ID}")
    # One log line per request, ids and counts only.
    lines = [json.loads(line.split(" ipaas_klaviyo.receiver ", 1)[1])
             for line in served.log.read_text().splitlines() if "ipaas_klaviyo.receiver" in line]
    assert {"event": "webhook", "status": 202, "envelope_id": "env-e2e", "accepted": 1,
            "coalesced": 0, "ignored": 0, "enqueued": [CUSTOMER_ID]} in lines


def test_a_change_after_the_sync_started_syncs_again(stack: LocalStack, served: Served) -> None:
    before = len(profile_syncs(stack))
    assert request(served.port, "POST", "/webhooks/ipaas",
                   {"scope": "customer/updated", "id": CUSTOMER_ID})[0] == 202
    wait_for(lambda: len(profile_syncs(stack)) == before + 1)
    assert request(served.port, "POST", "/webhooks/ipaas",
                   {"scope": "customer/updated", "id": CUSTOMER_ID})[0] == 202
    wait_for(lambda: len(profile_syncs(stack)) == before + 2)
