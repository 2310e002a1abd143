"""A worker killed with SIGKILL while 2,000 customers are in flight loses nothing and
creates no duplicate profile: its unacknowledged tasks come back after the broker's
visibility timeout and a new worker finishes them."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from producers.embedded_redis import EmbeddedRedis
from producers.local_stack import LocalStack
from producers.manual_sync import enqueue_customer
from sandbox.samples import customer
from worker.adapters.dead_letters import DeadLetterStore
from worker.adapters.history import HistoryStore

CUSTOMERS = 2000
INVALID_EVERY = 50  # every 50th customer has an invalid phone and must be dead-lettered


def records() -> Iterator[dict]:
    for n in range(1, CUSTOMERS + 1):
        phone = "123" if n % INVALID_EVERY == 0 else f"201555{n % 10000:04d}"
        yield customer(20000 + n, f"F{n}", f"L{n}", f"killed{n}@example.com", phone)


def wait_for_every_step(client: Any, ids: list[str], invalid: set[str], timeout: float
                        ) -> dict[str, dict[str, list[str]]]:
    """Each customer's final outcomes per step, oldest first, once every valid customer has
    all three steps and every invalid one its profile step."""
    history = HistoryStore(client)
    deadline = time.monotonic() + timeout
    while True:
        pipe = client.pipeline(transaction=False)
        for cid in ids:
            pipe.lrange(history.key(cid), 0, -1)
        outcomes: dict[str, dict[str, list[str]]] = {}
        for cid, raw in zip(ids, pipe.execute(), strict=True):
            steps: dict[str, list[str]] = {}
            for entry in reversed([json.loads(item) for item in raw]):
                if entry["outcome"] != "retrying":
                    steps.setdefault(entry["step"], []).append(entry["outcome"])
            outcomes[cid] = steps
        expected = {"profile", "address", "lists"}
        missing = [cid for cid in ids
                   if not ({"profile"} if cid in invalid else expected) <= outcomes[cid].keys()]
        if not missing:
            return outcomes
        if time.monotonic() > deadline:
            raise TimeoutError(f"steps missing for customers {missing[:10]}: "
                               f"{[outcomes[cid] for cid in missing[:5]]}")
        time.sleep(0.5)


def kill_tree(pid: int) -> None:
    """SIGKILL the worker and its pool children at once, like a machine losing power."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    child_pids = [int(c) for c in children.read_text().split()] if children.exists() else []
    for target in [pid, *child_pids]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(target, signal.SIGKILL)


@pytest.fixture
def stack(redis_server: EmbeddedRedis, redis_url: str, tmp_path: Path) -> Iterator[LocalStack]:
    # Subscriptions are batched (the default): the kill also catches batches being gathered
    # and sent. A message the broker loses in the kill comes back through the lost-task sweep.
    env = {"BROKER_VISIBILITY_TIMEOUT": "5", "RETRY_CAP_SECONDS": "1",
           "LOST_TASK_AFTER_SECONDS": "5"}
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
    invalid = {str(20000 + n) for n in range(INVALID_EVERY, CUSTOMERS + 1, INVALID_EVERY)}
    outcomes = wait_for_every_step(links, ids, invalid, timeout=240)

    dead = {e["customer_id"]: e for e in DeadLetterStore(stack.redis()).list()}
    assert set(dead) == invalid
    assert all(dead[cid]["reason"] == "invalid_phone" for cid in invalid)
    for cid in ids:
        steps = outcomes[cid]
        if cid in invalid:
            assert set(steps["profile"]) == {"rejected"}, (cid, steps)
        else:
            # A sync the kill interrupted runs again: as an update once its link was written
            # (the Update collection has no list for these customers: "skipped"), or as
            # "unchanged" once it had finished. The new customer's own lists must be done.
            assert steps["profile"][0] in ("created", "updated"), (cid, steps)
            assert set(steps["profile"][1:]) <= {"updated", "unchanged"}, (cid, steps)
            assert set(steps["address"]) == {"synced"}, (cid, steps)
            assert "synced" in steps["lists"], (cid, steps)
            assert set(steps["lists"]) <= {"synced", "skipped"}, (cid, steps)
    profiles = stack.klaviyo.all_profiles()
    external_ids = [p["attributes"]["external_id"] for p in profiles]
    assert len(external_ids) == len(set(external_ids)) == CUSTOMERS - len(invalid)
