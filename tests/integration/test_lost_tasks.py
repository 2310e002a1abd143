"""Messages the broker loses are sent again by the lost-task sweep.

Kombu's Redis transport pops a message off its queue before it records it as unacknowledged,
so a worker killed in between loses it whatever ``acks_late`` says. These tests put the
system in exactly that state — a ledger entry whose message is nowhere — and check that the
customer still ends with every step done, and that messages which are merely waiting are
left alone.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import redis

from producers.manual_sync import enqueue_customer
from sandbox.samples import customer
from tests.integration.conftest import StackFactory
from tests.support import steps_of, wait_until
from worker.adapters.broker import UNACKED_KEY, BrokerScan
from worker.adapters.metrics import Metrics
from worker.adapters.scheduled import ScheduledSteps
from worker.adapters.task_ledger import LedgerEntry, TaskLedger
from worker.tasks.lost_tasks import sweep_lost_tasks

SYNC = "ipaas_klaviyo.sync_customer"




def resent_count(client: redis.Redis) -> int:
    values = Metrics(client).snapshot().get("lost_tasks_resent_total", {})
    return sum(values.values())




# -- the sweep on its own: real Celery messages in a real Redis, no worker ----------------


def test_sweep_resends_only_what_is_neither_queued_nor_unacknowledged(
    make_stack: StackFactory,
) -> None:
    # A 2 s lost-task grace (default 90 s) so the sweep acts within the test; the default
    # grace is on the path of test_worker_killed.py, which runs on the documented defaults.
    stack = make_stack(LOST_TASK_AFTER_SECONDS="2")
    client = stack.redis()
    ledger = TaskLedger(client)
    queued = enqueue_customer("1")        # ledgered and in the profiles queue
    unacked = enqueue_customer("2")
    # A consumer takes the second message and does not acknowledge it, as a worker running
    # the task does: kombu moves it to the unacked hash.
    from worker.tasks.celery_app import app

    with app.connection_for_read() as conn:
        simple = conn.SimpleQueue("profiles")
        message = simple.get(timeout=5)  # the oldest first: customer 1's
        assert message.headers["id"] == queued.id
        message.requeue()
        taken = None
        for _ in range(3):
            candidate = simple.get(timeout=5)
            if candidate.headers["id"] == unacked.id:
                taken = candidate
                break
            candidate.requeue()
        assert taken is not None and client.hlen(UNACKED_KEY) == 1
        lost = "lost-task-id"
        ledger.record(lost, LedgerEntry(SYNC, "profiles", {"customer_id": "3"}), time.time())
        finished = enqueue_customer("4")
        ledger.finish(finished.id)
        # A retry waiting in the scheduled set is held too.
        retry_entry = LedgerEntry(SYNC, "profiles", {"customer_id": "6"})
        ScheduledSteps(client).schedule("waiting-retry", "profiles", "{}", time.time() + 600,
                                        ledger=retry_entry, ledger_due_at=time.time())
        for task_id in (queued.id, unacked.id, "waiting-retry"):  # make them due now
            ledger.postpone(task_id, time.time() - 1)

        assert BrokerScan(client).held_ids(["profiles"]) >= {queued.id, unacked.id}
        sent: list[tuple[str, LedgerEntry]] = []
        report = sweep_lost_tasks(ledger, BrokerScan(client), ScheduledSteps(client),
                                  lambda tid, entry: sent.append((tid, entry)),
                                  after_seconds=60, now=time.time())
        simple.close()

    assert [tid for tid, _ in sent] == [lost]
    assert sent[0][1].kwargs == {"customer_id": "3"} and sent[0][1].resent == 1
    assert report.due == 4 and report.still_held == 3
    # Nothing is due again before the grace has passed; every entry stays open.
    assert ledger.due() == []
    assert {ledger.get(t) is not None
            for t in (queued.id, unacked.id, lost, "waiting-retry")} == {True}
    assert ledger.get(finished.id) is None


def test_sweep_does_not_resend_a_task_that_finished_meanwhile(make_stack: StackFactory) -> None:
    # A 2 s lost-task grace (default 90 s) so the sweep acts within the test; the default
    # grace is on the path of test_worker_killed.py, which runs on the documented defaults.
    stack = make_stack(LOST_TASK_AFTER_SECONDS="2")
    client = stack.redis()
    ledger = TaskLedger(client)
    ledger.record("gone", LedgerEntry(SYNC, "profiles", {"customer_id": "5"}), time.time() - 1)

    class FinishingScan(BrokerScan):
        def held_ids(self, queues: Any) -> set[str]:
            ledger.finish("gone")  # the task finishes while the sweep reads the broker
            return set()

    sent: list[str] = []
    report = sweep_lost_tasks(ledger, FinishingScan(client), ScheduledSteps(client),
                              lambda tid, e: sent.append(tid), after_seconds=60, now=time.time())
    assert sent == [] and report.resent == [] and ledger.open_count() == 0


# -- end to end: real worker processes ----------------------------------------------------


def test_a_lost_sync_message_is_sent_again_and_the_customer_synced(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    # A 2 s lost-task grace (default 90 s) so the sweep acts within the test; the default
    # grace is on the path of test_worker_killed.py, which runs on the documented defaults.
    stack = make_stack(LOST_TASK_AFTER_SECONDS="2")
    stack.ipaas.put_customer(customer(30001, "Lost", "Message", "lost@example.com",
                                      "2015550101"))
    client = stack.redis()
    # The state a worker killed between BRPOP and recording the message leaves: the ledger
    # entry was written, the message is gone.
    TaskLedger(client).record("never-delivered", LedgerEntry(
        SYNC, "profiles", {"customer_id": "30001", "tracking_guid": "g-lost"}), time.time())
    stack.start_worker(concurrency=1, log_path=str(tmp_path / "worker.log"))

    wait_until(lambda: {"profile", "address", "lists"} <= steps_of(client, "30001").keys(),
               60, "the customer's steps")
    assert steps_of(client, "30001") == {"profile": "created", "address": "synced",
                                         "lists": "synced"}
    wait_until(lambda: TaskLedger(client).open_count() == 0, 10, "the ledger to empty")
    assert resent_count(client) == 1
    assert "lost by the broker" in (tmp_path / "worker.log").read_text()
    assert len(stack.klaviyo.all_profiles()) == 1


def test_a_lost_chained_step_is_sent_again(make_stack: StackFactory, tmp_path: Path) -> None:
    # A 2 s lost-task grace (default 90 s) so the sweep acts within the test; the default
    # grace is on the path of test_worker_killed.py, which runs on the documented defaults.
    # Batching off: the lost step is the lists task itself, not a batch flush (that case
    # is test_a_lost_batch_flush_is_replaced, with a window).
    stack = make_stack(LOST_TASK_AFTER_SECONDS="2", SUBSCRIPTION_BATCH_WINDOW_SECONDS="0")
    stack.ipaas.put_customer(customer(30002, "Lost", "Lists", "lists@example.com",
                                      "2015550102"))
    client = stack.redis()
    # The first worker runs the profile and address steps but never takes the lists step,
    # whose message is then lost.
    first = stack.start_worker(concurrency=1, log_path=str(tmp_path / "first.log"),
                               exclude_queues=("lists",))
    enqueue_customer("30002")
    wait_until(lambda: {"profile", "address"} <= steps_of(client, "30002").keys(), 60,
               "the profile and address steps")
    wait_until(lambda: client.llen("lists") == 1, 10, "the lists step's message")
    first.send_signal(signal.SIGTERM)
    first.wait(timeout=30)
    stack.workers.remove(first)
    client.delete("lists")
    assert "lists" not in steps_of(client, "30002")

    stack.start_worker(concurrency=1, log_path=str(tmp_path / "second.log"))
    wait_until(lambda: "lists" in steps_of(client, "30002"), 60, "the lists step")
    assert steps_of(client, "30002")["lists"] == "synced"
    assert resent_count(client) == 1
    wait_until(lambda: TaskLedger(client).open_count() == 0, 10, "the ledger to empty")


def test_a_lost_batch_flush_is_replaced(make_stack: StackFactory, tmp_path: Path) -> None:
    # A 2 s lost-task grace (default 90 s) so the sweep acts within the test; the default
    # grace is on the path of test_worker_killed.py, which runs on the documented defaults.
    # A 3 s window (default 2 s) leaves time to kill the worker before the flush runs.
    stack = make_stack(LOST_TASK_AFTER_SECONDS="2", SUBSCRIPTION_BATCH_WINDOW_SECONDS="3")
    stack.ipaas.put_customer(customer(30003, "Lost", "Flush", "flush@example.com",
                                      "2015550103"))
    client = stack.redis()
    first = stack.start_worker(concurrency=1, log_path=str(tmp_path / "first.log"))
    enqueue_customer("30003")
    # The lists step queued its actions and scheduled a flush 3 s out (in the scheduled set);
    # the worker dies, and the flush's message is lost wherever it was: scheduled, queued or
    # held by the dead worker.
    wait_until(lambda: bool(client.keys("ipk:subs:step:*")), 60, "the queued lists step")
    first.kill()
    first.wait()
    stack.workers.remove(first)
    assert "lists" not in steps_of(client, "30003"), "the flush ran before the kill"
    for tag, raw in client.hgetall(UNACKED_KEY).items():
        if "flush_subscriptions" in raw:
            client.hdel(UNACKED_KEY, tag)
            client.zrem("unacked_index", tag)
    client.delete("lists", "ipk:scheduled", "ipk:scheduled:entries")

    stack.start_worker(concurrency=1, log_path=str(tmp_path / "second.log"))
    wait_until(lambda: "lists" in steps_of(client, "30003"), 90, "the lists step")
    assert steps_of(client, "30003")["lists"] == "synced"
    assert "whose flush was lost" in (tmp_path / "second.log").read_text()
    wait_until(lambda: TaskLedger(client).open_count() == 0, 10, "the ledger to empty")
