"""Retries wait in Redis (the scheduled set), never in a worker: the atomic move, a retry due
while no worker runs, what operators see of a waiting retry, and replay of one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import redis

from producers.manual_sync import enqueue_customer
from producers.metrics_server import exposition
from producers.shell import queue_depths
from sandbox.klaviyo_faults import error_response
from sandbox.samples import customer
from tests.integration.conftest import StackFactory
from tests.support import kill_tree, wait_until
from worker.adapters.dead_letters import DeadLetterStore
from worker.adapters.history import HistoryStore
from worker.adapters.scheduled import ScheduledSteps, Waiting
from worker.adapters.task_ledger import LedgerEntry, TaskLedger
from worker.tasks.dispatch import send_later
from worker.tasks.scheduled_mover import move_due_steps

SYNC = "ipaas_klaviyo.sync_customer"




def outcomes(client: redis.Redis, customer_id: str, step: str = "profile") -> list[str]:
    return [json.loads(raw)["outcome"]
            for raw in reversed(client.lrange(HistoryStore(client).key(customer_id), 0, -1))
            if json.loads(raw)["step"] == step]


def steps(client: redis.Redis, customer_id: str) -> set[str]:
    return {json.loads(raw)["step"]
            for raw in client.lrange(HistoryStore(client).key(customer_id), 0, -1)}




class FailUpserts:
    """Klaviyo answers 503 to every profile upsert while ``failing`` is set."""

    def __init__(self) -> None:
        self.failing = True
        self.calls = 0

    def __call__(self, request: Any, operation: str) -> Any:
        if operation != "create_or_update_profile":
            return None
        self.calls += 1
        return error_response(503) if self.failing else None


# -- the scheduled set on its own ---------------------------------------------------------


def test_two_movers_never_take_the_same_entry(redis_client: redis.Redis) -> None:
    scheduled = ScheduledSteps(redis_client)
    now = time.time()
    for n in range(2000):
        scheduled.schedule(f"t{n}", "q-test", f"message-{n}", now - 1)
    moved: list[int] = []

    def mover() -> None:
        moved.append(move_due_steps(ScheduledSteps(redis_client), now=time.time(),
                                    lost_after_seconds=90, limit=50))

    threads = [threading.Thread(target=mover) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    messages = redis_client.lrange("q-test", 0, -1)
    assert sum(moved) == 2000
    assert len(messages) == len(set(messages)) == 2000
    assert scheduled.size() == 0


def test_only_due_entries_move_and_their_ledger_entry_follows(
    redis_client: redis.Redis,
) -> None:
    scheduled = ScheduledSteps(redis_client)
    ledger = TaskLedger(redis_client)
    now = time.time()
    waiting = Waiting("due", SYNC, "profile", "profile:1", now - 1, 2, 8, "klaviyo 503")
    scheduled.schedule("due", "q-test", "m-due", now - 1, waiting=waiting,
                       ledger=LedgerEntry(SYNC, "q-test", {"customer_id": "1", "attempts": 1}),
                       ledger_due_at=now + 1000)
    scheduled.schedule("later", "q-test", "m-later", now + 600)
    assert scheduled.retrying() == 1 and scheduled.waiting("profile", "1") == waiting
    assert ledger.get("due") == LedgerEntry(SYNC, "q-test", {"customer_id": "1", "attempts": 1})

    assert move_due_steps(scheduled, now=now, lost_after_seconds=90) == 1
    assert redis_client.lrange("q-test", 0, -1) == ["m-due"]
    assert scheduled.waiting("profile", "1") is None and scheduled.retrying() == 0
    assert scheduled.held(["due", "later"]) == {"later"}
    # Queued now: the lost-task sweep looks for it after the usual grace, not the retry's.
    assert redis_client.zscore(ledger.due_key, "due") == now + 90


# -- end to end: real workers, defaults but for the test stack's short backoff -----------


def test_a_retry_due_while_no_worker_runs_is_taken_by_the_next_worker(
    make_stack: StackFactory, tmp_path: Path, redis_url: str
) -> None:
    stack = make_stack()
    fault = FailUpserts()
    stack.klaviyo.interceptors.append(fault)
    stack.ipaas.put_customer(customer(62001, "Wait", "Ing", "waiting@example.com",
                                      "2015550170"))
    client = stack.redis()
    scheduled = ScheduledSteps(client)
    first = stack.start_worker(concurrency=1, log_path=str(tmp_path / "first.log"))
    sent = enqueue_customer("62001")
    wait_until(lambda: scheduled.waiting("profile", "62001") is not None, 60, "a retry")
    kill_tree(first.pid)
    first.wait()
    stack.workers.remove(first)

    # What an operator sees while it waits: status, the shell's queues, the metrics.
    waiting = scheduled.waiting("profile", "62001")
    assert waiting is not None and waiting.task_id == sent.id
    status = subprocess.run([sys.executable, "-m", "producers.cli", "status", "62001",
                             "--json"], env=dict(os.environ), capture_output=True, text=True,
                            timeout=60)
    shown = json.loads(status.stdout)["retrying"]
    assert len(shown) == 1 and shown[0]["step"] == "profile"
    assert shown[0]["attempt"] >= 2 and shown[0]["max_attempts"] == 4
    assert "503" in shown[0]["last_error"]
    assert queue_depths(client)["retrying"] == 1
    assert b"ipaas_klaviyo_retrying 1.0" in exposition(client)

    wait_until(lambda: time.time() > waiting.due_at + 0.5, 30, "the retry to fall due")
    assert "created" not in outcomes(client, "62001")  # nothing ran it: no worker
    fault.failing = False
    stack.start_worker(concurrency=1, log_path=str(tmp_path / "second.log"))
    wait_until(lambda: "created" in outcomes(client, "62001"), 60, "the retried sync")
    assert sent.get(timeout=30)["outcome"] == "created"  # the waiter got the retry's result
    wait_until(lambda: TaskLedger(client).open_count() == 0 and scheduled.retrying() == 0, 30,
               "every step to finish")
    assert len(stack.klaviyo.all_profiles()) == 1


def test_replay_runs_a_waiting_retry_now_instead_of_a_second_copy(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    stack = make_stack()
    counter = FailUpserts()
    counter.failing = False
    stack.klaviyo.interceptors.append(counter)
    stack.ipaas.put_customer(customer(62002, "Re", "Play", "replay-wait@example.com",
                                      "2015550171"))
    client = stack.redis()
    store = DeadLetterStore(client)
    # An old dead letter for the customer, and a retry of its profile step waiting an hour
    # (it failed again since): replay must run that retry now, once.
    store.record(customer_id="62002", step="profile", reason="retries_exhausted", errors=[],
                 last_error="klaviyo 503")
    waiting = Waiting("", SYNC, "profile", "profile:62002", time.time() + 3600, 3, 8, "503")
    task_id = send_later(SYNC, {"customer_id": "62002", "attempts": 2}, 3600,
                         waiting=waiting, tracked=True)
    stack.start_worker(concurrency=1, log_path=str(tmp_path / "worker.log"))

    done = subprocess.run([sys.executable, "-m", "producers.cli", "dlq", "replay", "--all"],
                          env=dict(os.environ), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert task_id in done.stdout and "1 replayed" in done.stdout
    wait_until(lambda: "created" in outcomes(client, "62002"), 60, "the replayed retry")
    # Settled: nothing scheduled, queued or open could still run the step a second time.
    # (The scheduled set may still hold a batch's lease check: not a retry, not this step.)
    wait_until(lambda: TaskLedger(client).open_count() == 0
               and ScheduledSteps(client).retrying() == 0 and "lists" in steps(client, "62002"),
               30, "every step to finish")
    assert queue_depths(client)["profiles"] == 0
    assert counter.calls == 1
    assert outcomes(client, "62002") == ["created"]
    assert store.count() == 0
