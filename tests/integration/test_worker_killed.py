"""A worker killed with SIGKILL while 2,000 customers are in flight loses nothing and
creates no duplicate profile: its unacknowledged tasks come back after the broker's
visibility timeout and a new worker finishes them."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from producers.embedded_redis import EmbeddedRedis
from producers.local_stack import LocalStack
from producers.manual_sync import enqueue_customer
from sandbox.samples import customer
from worker.adapters.dead_letters import DeadLetterStore

CUSTOMERS = 2000
INVALID_EVERY = 50  # every 50th customer has an invalid phone and must be dead-lettered


def records() -> Iterator[dict]:
    for n in range(1, CUSTOMERS + 1):
        phone = "123" if n % INVALID_EVERY == 0 else f"201555{n % 10000:04d}"
        yield customer(20000 + n, f"F{n}", f"L{n}", f"killed{n}@example.com", phone)


def kill_tree(pid: int) -> None:
    """SIGKILL the worker and its pool children at once, like a machine losing power."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    child_pids = [int(c) for c in children.read_text().split()] if children.exists() else []
    for target in [pid, *child_pids]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(target, signal.SIGKILL)


@pytest.fixture
def stack(redis_server: EmbeddedRedis, redis_url: str, tmp_path: Path) -> Iterator[LocalStack]:
    # Subscriptions are sent per customer here: this test is about the pipeline's tasks.
    # A worker killed while holding a subscription batch is covered by
    # test_subscription_batching.py (see the closing note: one combined run lost a lists
    # outcome, under investigation).
    env = {"BROKER_VISIBILITY_TIMEOUT": "5", "RETRY_CAP_SECONDS": "1",
           "SUBSCRIPTION_BATCH_WINDOW_SECONDS": "0"}
    with LocalStack(redis_url, extra_env=env) as local:
        local.apply_env()
        local.klaviyo.server.record_requests = False  # thousands of requests; not a contract test
        yield local
        local.stop_workers(signal.SIGKILL)


def test_sigkilled_worker_loses_nothing_and_duplicates_nothing(
    stack: LocalStack, tmp_path: Path
) -> None:
    for record in records():
        stack.ipaas.put_customer(record)
    # A little latency per upsert keeps many customers in flight when the kill comes.
    stack.klaviyo.interceptors.append(
        lambda request, operation: time.sleep(0.002) if operation == "create_or_update_profile"
        else None)
    first = stack.start_worker(concurrency=2, log_path=str(tmp_path / "first.log"))
    ids = [str(20000 + n) for n in range(1, CUSTOMERS + 1)]
    for cid in ids:
        enqueue_customer(cid)
    links = stack.redis()
    deadline = time.monotonic() + 60
    while links.hlen("ipk:links") < CUSTOMERS // 4:
        assert time.monotonic() < deadline, "the first worker made no progress"
        time.sleep(0.05)
    kill_tree(first.pid)
    first.wait()
    stack.workers.remove(first)
    assert links.hlen("ipk:links") < CUSTOMERS - CUSTOMERS // INVALID_EVERY  # truly mid-run

    stack.start_worker(concurrency=2, log_path=str(tmp_path / "second.log"))
    outcomes = stack.wait_for_outcomes(ids, timeout=240)

    dead = {e["customer_id"]: e for e in DeadLetterStore(stack.redis()).list()}
    invalid = {str(20000 + n) for n in range(INVALID_EVERY, CUSTOMERS + 1, INVALID_EVERY)}
    assert set(dead) == invalid
    assert all(dead[cid]["reason"] == "invalid_phone" for cid in invalid)
    for cid in ids:
        steps = outcomes[cid]
        if cid in invalid:
            assert steps["profile"]["outcome"] == "rejected"
        else:
            assert steps["profile"]["outcome"] in ("created", "updated"), (cid, steps)
            assert steps["address"]["outcome"] == "synced"
            assert steps["lists"]["outcome"] == "synced"
    profiles = stack.klaviyo.all_profiles()
    external_ids = [p["attributes"]["external_id"] for p in profiles]
    assert len(external_ids) == len(set(external_ids)) == CUSTOMERS - len(invalid)
