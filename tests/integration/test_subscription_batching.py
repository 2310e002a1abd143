"""The batched lists step with a real worker: many customers' list subscriptions go to
Klaviyo in a few calls, a refused row dead-letters only its customer, batching can be
turned off, and a worker killed while sending a batch loses nobody."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from producers.manual_sync import enqueue_customer
from sandbox.httpserver import Request, Response
from sandbox.klaviyo_faults import Fault, error_response
from sandbox.local_stack import LocalStack
from sandbox.samples import SEED_LIST, customer
from tests.integration.conftest import StackFactory
from tests.integration.test_worker_killed import kill_tree
from worker.adapters.dead_letters import DeadLetterStore


def seed(stack: LocalStack, first: int, count: int) -> list[str]:
    """Customers new to Klaviyo: the seed mapping's add collection puts each on LIST_Sms
    Subscribers (one subscribe action each)."""
    for n in range(count):
        stack.ipaas.put_customer(customer(first + n, f"F{n}", f"L{n}",
                                          f"batch{first + n}@example.com", None))
    return [str(first + n) for n in range(count)]


def sync_all(stack: LocalStack, ids: list[str], timeout: float = 240
             ) -> dict[str, dict[str, dict]]:
    for cid in ids:
        enqueue_customer(cid)
    return stack.wait_for_outcomes(ids, timeout=timeout)


def profile_ids(outcomes: dict[str, dict[str, dict]]) -> dict[str, str]:
    return {cid: steps["profile"]["profile_id"] for cid, steps in outcomes.items()}


def test_300_customers_join_their_list_in_a_few_calls(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    stack = make_stack()
    ids = seed(stack, 50000, 300)
    stack.start_worker(concurrency=4, log_path=str(tmp_path / "worker.log"))
    outcomes = sync_all(stack, ids)
    calls = stack.klaviyo.call_counts["bulk_subscribe_profiles"]
    print(f"\n300 customers: {calls} bulk_subscribe_profiles calls, "
          f"{stack.klaviyo.call_counts['create_or_update_profile']} profile imports")
    assert calls <= 8, calls  # measured: 4 (one per 2 s window while customers arrive)
    assert all(steps["lists"]["outcome"] == "synced" for steps in outcomes.values())
    assert set(profile_ids(outcomes).values()) <= stack.klaviyo.list_members(SEED_LIST)
    assert DeadLetterStore(stack.redis()).count() == 0
    # Sent batches leave nothing behind: no personal data waits in Redis.
    assert stack.redis().keys("ipk:subs:buf:*") == []
    assert stack.redis().keys("ipk:subs:inflight:*") == []


def test_a_row_klaviyo_refuses_dead_letters_only_that_customer(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    stack = make_stack()
    fault = Fault("bulk_subscribe_profiles", 400, times=1,
                  pointer="/data/attributes/profiles/data/3/attributes/email")
    stack.klaviyo.interceptors.append(fault)
    ids = seed(stack, 51000, 40)
    stack.start_worker(concurrency=4, log_path=str(tmp_path / "worker.log"))
    outcomes = sync_all(stack, ids)
    assert fault.fired == 1
    rejected = [cid for cid, steps in outcomes.items() if steps["lists"]["outcome"] == "rejected"]
    assert len(rejected) == 1
    (cid,) = rejected
    assert outcomes[cid]["lists"]["reason"] == "klaviyo_rejected"
    dead = DeadLetterStore(stack.redis()).list()
    assert [(e["id"], e["reason"]) for e in dead] == [(f"lists:{cid}", "klaviyo_rejected")]
    assert [e["field"] for e in dead[0]["errors"]] == ["email"]
    assert dead[0]["context"]["profile_id"] == outcomes[cid]["profile"]["profile_id"]
    others = {pid for c, pid in profile_ids(outcomes).items() if c != cid}
    assert others <= stack.klaviyo.list_members(SEED_LIST)
    assert outcomes[cid]["profile"]["profile_id"] not in stack.klaviyo.list_members(SEED_LIST)


def test_window_zero_sends_each_customer_on_its_own(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    # Window 0 is the setting under test (batching off); the default 2 s window is the
    # path of the other tests in this module.
    stack = make_stack(SUBSCRIPTION_BATCH_WINDOW_SECONDS="0")
    ids = seed(stack, 52000, 12)
    stack.start_worker(concurrency=2, log_path=str(tmp_path / "worker.log"))
    outcomes = sync_all(stack, ids)
    assert stack.klaviyo.call_counts["bulk_subscribe_profiles"] == 12
    assert all(steps["lists"]["outcome"] == "synced" for steps in outcomes.values())
    assert set(profile_ids(outcomes).values()) <= stack.klaviyo.list_members(SEED_LIST)
    assert stack.redis().keys("ipk:subs:*") == []


class StallFirstSubscribe:
    """Holds the first subscribe call (the worker is killed meanwhile) and then fails it, so
    only a re-sent batch can subscribe those customers."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, request: Request, operation: str) -> Response | None:
        if operation != "bulk_subscribe_profiles":
            return None
        with self._lock:
            if self.started.is_set():
                return None
            self.started.set()
        time.sleep(self.seconds)
        return error_response(503)


def test_a_worker_killed_mid_flush_loses_no_subscription(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    # A short task time limit, hence a short batch lease (and the visibility timeout and
    # waits it allows), so the held batch comes back within the test, not after 75 s. The
    # default lease is on the path of test_worker_killed's 2,000-customer run (batching on).
    stack = make_stack(TASK_TIME_LIMIT_SECONDS="10", BROKER_VISIBILITY_TIMEOUT="30",
                       HTTP_TIMEOUT="4", RATE_LIMIT_MAX_WAIT_SECONDS="1")
    stall = StallFirstSubscribe(seconds=3)
    stack.klaviyo.interceptors.append(stall)
    ids = seed(stack, 53000, 60)
    first = stack.start_worker(concurrency=2, log_path=str(tmp_path / "first.log"))
    for cid in ids:
        enqueue_customer(cid)
    assert stall.started.wait(60), "no subscribe batch was sent"
    kill_tree(first.pid)
    first.wait()
    stack.workers.remove(first)
    assert stack.redis().keys("ipk:subs:inflight:*"), stack.redis().keys("ipk:subs:*")

    stack.start_worker(concurrency=2, log_path=str(tmp_path / "second.log"))
    outcomes = stack.wait_for_outcomes(ids, timeout=180)
    assert all(steps["lists"]["outcome"] == "synced" for steps in outcomes.values())
    assert set(profile_ids(outcomes).values()) <= stack.klaviyo.list_members(SEED_LIST)
    assert DeadLetterStore(stack.redis()).count() == 0
    assert stack.redis().keys("ipk:subs:inflight:*") == []
