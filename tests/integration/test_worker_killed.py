"""A worker killed with SIGKILL loses nothing and creates no duplicate profile, with the
documented defaults: the tasks it held (running or prefetched) come back after the broker's
visibility timeout (90 s), the retries it had scheduled wait in Redis and run when due, and a
new worker finishes everything within three minutes of the kill.

The local stack shortens retry backoff for the rest of the suite; these tests put the
documented retry defaults back, so the kill catches customers in real backoff."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from producers.manual_sync import enqueue_customer
from sandbox.embedded_redis import EmbeddedRedis
from sandbox.klaviyo_faults import error_response
from sandbox.local_stack import LocalStack
from sandbox.samples import customer
from tests.support import kill_tree
from worker.adapters.broker import UNACKED_KEY
from worker.adapters.dead_letters import DeadLetterStore
from worker.adapters.history import HistoryStore
from worker.adapters.scheduled import ScheduledSteps

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




# The documented defaults, over the local stack's short test backoff (sandbox/local_stack.py).
DEFAULT_RETRIES = {"RETRY_BASE_SECONDS": "2", "RETRY_CAP_SECONDS": "600",
                   "SYNC_MAX_ATTEMPTS": "8"}
RECOVERY_BUDGET_SECONDS = 180  # "a killed worker's work runs again within three minutes"


@pytest.fixture
def stack(redis_server: EmbeddedRedis, redis_url: str, tmp_path: Path) -> Iterator[LocalStack]:
    # Every other setting at its default: subscriptions batched, the visibility timeout, the
    # task time limit and the lost-task grace as a user runs them.
    # Burst mode off: these tests kill a worker amid single writes and their retries (their
    # backlog of 2,000 would switch burst mode on); test_burst_mode kills one mid-batch.
    with LocalStack(redis_url, extra_env={**DEFAULT_RETRIES, "BURST_THRESHOLD": "0"}) as local:
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

    killed_at = time.monotonic()

    stack.start_worker(concurrency=2, log_path=str(tmp_path / "second.log"))
    invalid = {str(20000 + n) for n in range(INVALID_EVERY, CUSTOMERS + 1, INVALID_EVERY)}
    outcomes = wait_for_every_step(links, ids, invalid, timeout=RECOVERY_BUDGET_SECONDS)
    assert time.monotonic() - killed_at < RECOVERY_BUDGET_SECONDS

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
            # "unchanged" once it had finished; a sync killed after its fingerprint was
            # written but before its outcome was recorded shows "unchanged" alone. Either way
            # the profile exists once (checked below) and its own lists must be done.
            assert steps["profile"][0] in ("created", "updated", "unchanged"), (cid, steps)
            assert set(steps["profile"][1:]) <= {"updated", "unchanged"}, (cid, steps)
            assert set(steps["address"]) == {"synced"}, (cid, steps)
            assert "synced" in steps["lists"], (cid, steps)
            assert set(steps["lists"]) <= {"synced", "skipped"}, (cid, steps)
    profiles = stack.klaviyo.all_profiles()
    external_ids = [p["attributes"]["external_id"] for p in profiles]
    assert len(external_ids) == len(set(external_ids)) == CUSTOMERS - len(invalid)


class Outage:
    """Klaviyo answers 503 to the upserts of ``failing`` customers, and holds the upserts of
    ``stuck`` ones (a slow call a worker is in the middle of), until ``over`` is set."""

    def __init__(self, failing: set[str], stuck: set[str]) -> None:
        self.failing, self.stuck = failing, stuck
        self.over = threading.Event()
        self.stuck_started: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, request: Any, operation: str) -> Any:
        if operation != "create_or_update_profile" or self.over.is_set():
            return None
        external_id = str((request.json() or {}).get("data", {}).get("attributes", {})
                          .get("external_id"))
        if external_id in self.failing:
            return error_response(503)
        if external_id in self.stuck:
            with self._lock:
                self.stuck_started.add(external_id)
            self.over.wait(60)
            return error_response(503)
        return None


def test_retries_and_held_tasks_survive_a_kill_with_the_defaults(
    stack: LocalStack, tmp_path: Path
) -> None:
    retrying = [str(64000 + n) for n in range(60)]
    held = [str(64100 + n) for n in range(4)]
    for cid in [*retrying, *held]:
        n = int(cid) % 1000
        stack.ipaas.put_customer(customer(int(cid), f"F{n}", f"L{n}", f"outage{cid}@example.com",
                                          f"201555{n:04d}"))
    outage = Outage(set(retrying), set(held))
    stack.klaviyo.interceptors.append(outage)
    client = stack.redis()
    scheduled = ScheduledSteps(client)
    first = stack.start_worker(concurrency=2, log_path=str(tmp_path / "first.log"))
    for cid in retrying:
        enqueue_customer(cid)
    deadline = time.monotonic() + 120
    while sum(scheduled.waiting("profile", cid) is not None for cid in retrying) < 60:
        assert time.monotonic() < deadline, "the 60 customers never all waited for a retry"
        time.sleep(0.1)
    for cid in held:  # two run (stuck in a slow Klaviyo call), two wait behind them
        enqueue_customer(cid)
    deadline = time.monotonic() + 60
    while len(outage.stuck_started) < 2:
        assert time.monotonic() < deadline, "the stuck calls never started"
        time.sleep(0.05)

    kill_tree(first.pid)
    first.wait()
    stack.workers.remove(first)
    killed_at = time.monotonic()
    outage.over.set()  # Klaviyo is healthy again
    assert client.hlen(UNACKED_KEY) >= 2  # the dead worker's held tasks
    assert scheduled.retrying() >= 60 - 2  # a few may have fallen due and been queued

    stack.start_worker(concurrency=2, log_path=str(tmp_path / "second.log"))
    ids = [*retrying, *held]
    outcomes = wait_for_every_step(client, ids, set(), timeout=RECOVERY_BUDGET_SECONDS)
    recovered_in = time.monotonic() - killed_at
    assert recovered_in < RECOVERY_BUDGET_SECONDS, recovered_in
    for cid in ids:
        steps = outcomes[cid]
        # Created exactly once; an interrupted sync that ran again is an update at most.
        assert steps["profile"][0] == "created", (cid, steps)
        assert set(steps["profile"][1:]) <= {"updated", "unchanged"}, (cid, steps)
    profiles = stack.klaviyo.all_profiles()
    external_ids = [p["attributes"]["external_id"] for p in profiles]
    assert sorted(external_ids) == sorted(ids)  # none lost, none twice
    assert DeadLetterStore(client).count() == 0
