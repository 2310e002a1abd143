"""Burst mode at small scale: a backlog above BURST_THRESHOLD goes to Klaviyo in a bulk
import job, and every customer in it ends as the live path would have ended it.

BURST_THRESHOLD is lowered from 500 to 10 here so that a backlog of a few dozen customers
(a test's worth) switches the fleet; the sandbox's job processing delay keeps a batch in
flight long enough to change a customer or kill the worker under it.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from producers.cli_admin import cmd_status
from producers.manual_sync import enqueue_customer
from sandbox.klaviyo_faults import Fault
from sandbox.local_stack import LocalStack
from sandbox.samples import address, customer
from tests.contract.openapi_contract import violations
from tests.integration.conftest import StackFactory
from tests.integration.test_worker_killed import kill_tree
from worker.adapters.dead_letters import DeadLetterStore
from worker.adapters.history import HistoryStore
from worker.adapters.links import LinkStore
from worker.adapters.metrics import Metrics
from worker.adapters.tombstones import Tombstones

THRESHOLD = "10"
BACKLOG = 30  # plain valid customers, beyond the special cases


def valid(n: int, first: str | None = None) -> dict[str, Any]:
    return customer(n, first or f"F{n}", f"L{n}", f"burst{n}@example.com", f"201555{n:04d}")


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def history(client: redis.Redis, cid: str) -> list[dict[str, Any]]:
    """Oldest first, without retries."""
    raw = client.lrange(HistoryStore(client).key(cid), 0, -1)
    return [e for e in reversed([json.loads(x) for x in raw]) if e["outcome"] != "retrying"]


def steps(client: redis.Redis, cid: str) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for entry in history(client, cid):
        found.setdefault(entry["step"], []).append(entry)
    return found


def settled(client: redis.Redis, expected: dict[str, set[str]]) -> Callable[[], bool]:
    def check() -> bool:
        return all(want <= steps(client, cid).keys() for cid, want in expected.items())
    return check


def burst_stack(make_stack: StackFactory, **env: str) -> LocalStack:
    stack = make_stack(BURST_THRESHOLD=THRESHOLD, **env)
    stack.klaviyo.server.record_requests = True  # the contract is checked below
    stack.klaviyo.bulk_processing_seconds = 3.0
    return stack


def test_each_customer_in_a_batch_ends_as_the_live_path_would(
        make_stack: StackFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stack = burst_stack(make_stack)
    client = stack.redis()
    stack.start_worker(concurrency=2, log_path=str(tmp_path / "w1.log"))

    # No backlog: one change is one profile-import call, as today.
    stack.ipaas.put_customer(valid(1))
    enqueue_customer("1")
    wait_until(settled(client, {"1": {"profile", "address", "lists"}}), 60, "the single sync")
    assert stack.klaviyo.call_counts["create_or_update_profile"] == 1
    assert stack.klaviyo.call_counts["bulk_import_profiles"] == 0
    assert "via" not in steps(client, "1")["profile"][0]

    # The backlog builds while no worker runs, as when 20,000 webhooks arrive at once.
    stack.stop_workers(signal.SIGTERM)
    plain = [str(n) for n in range(100, 100 + BACKLOG)]
    for cid in plain:
        stack.ipaas.put_customer(valid(int(cid)))
    stack.ipaas.put_customer(customer(2, "Bad", "Phone", "badphone@example.com", "123"))
    stack.ipaas.put_customer(valid(3))  # Klaviyo's job refuses this row
    stack.klaviyo.bulk_row_error = (
        lambda attrs: "invalid" if attrs.get("email") == "burst3@example.com" else None)
    # Its email and phone belong to two different Klaviyo profiles.
    stack.klaviyo.add_profile(email="conflict@example.com")
    stack.klaviyo.add_profile(phone_number="+12015550004")
    stack.ipaas.put_customer(customer(4, "Con", "Flict", "conflict@example.com", "2015550004"))
    stack.ipaas.put_customer(customer(5, "Bad", "Address", "badaddress@example.com",
                                      "2015550005", addresses=[address(postal_code="ABCDE")]))
    stack.ipaas.put_customer(valid(6, "Before"))  # changed while its batch is in flight
    stack.ipaas.put_customer(valid(7))  # erased (a tombstone) while its sync waits
    Tombstones(client).add("7", "forget")
    special = ["2", "3", "4", "5", "6", "7"]
    before = dict(stack.klaviyo.call_counts)
    for cid in ["1", *special, *plain]:  # customer 1 again: unchanged
        enqueue_customer(cid)
    stack.start_worker(concurrency=2, log_path=str(tmp_path / "w2.log"))

    # Customer 6 changes while its batch is in flight: the change must win.
    wait_until(lambda: bool(client.hexists("ipk:burst:inflight", "6")), 60, "6 in flight")
    stack.ipaas.put_customer(valid(6, "After"))
    enqueue_customer("6")
    # `status` tells the operator the customer waits in a burst batch.
    cmd_status(argparse.Namespace(id="6", json=False, transaction=False))
    assert "this customer is among them" in capsys.readouterr().out

    everything = {cid: {"profile", "address", "lists"} for cid in plain}
    everything.update({"1": {"profile"}, "2": {"profile"}, "3": {"profile"},
                       "4": {"profile"}, "5": {"profile", "address", "lists"},
                       "7": {"profile"}})
    wait_until(settled(client, everything), 120, "every outcome")
    wait_until(lambda: len(steps(client, "6").get("profile", [])) >= 2
               and client.hlen("ipk:burst:inflight") == 0
               and client.zcard("ipk:burst:waiting") == 0, 120, "customer 6 twice")

    # The fleet switched on for the backlog, and back off once it was gone (state in Redis).
    switches = Metrics(client).snapshot()["burst_switches_total"]
    assert switches[(("to", "on"),)] >= 1
    wait_until(lambda: client.get("ipk:burst:mode") is None, 30, "burst mode off again")
    used = {op: n - before.get(op, 0) for op, n in stack.klaviyo.call_counts.items()}
    assert used.get("bulk_import_profiles", 0) >= 1
    # The batch wrote the backlog: no profile-import call per customer, only the conflict's
    # fallback, whose 409 resolution takes up to four calls (sync_service.upsert_profile).
    assert used.get("create_or_update_profile", 0) <= 4, used

    for cid in plain:
        got = steps(client, cid)
        assert [e["outcome"] for e in got["profile"]] == ["created"], (cid, got)
        assert got["profile"][0]["via"] == "bulk"
        assert got["address"][0]["outcome"] == "synced"
        [profile] = stack.klaviyo.find_profiles(external_id=cid)
        assert got["profile"][0]["profile_id"] == profile["id"]
    # iPaaS.com learns the new links (the backfill's write-back task), which are confirmed.
    links = LinkStore(client)
    wait_until(lambda: all(links.lookup(cid)[1] for cid in plain), 60, "write-back")
    assert all(stack.ipaas.external_id(cid) == links.lookup(cid)[0] for cid in plain)

    dead = {e["id"]: e for e in DeadLetterStore(client).list()}
    assert steps(client, "1")["profile"][-1]["outcome"] == "unchanged"
    cmd_status(argparse.Namespace(id=plain[0], json=False, transaction=False))
    assert "(via bulk)" in capsys.readouterr().out
    assert dead["profile:2"]["reason"] == "invalid_phone"
    assert dead["profile:3"]["reason"] == "klaviyo_rejected"
    assert dead["profile:3"]["errors"][0]["field"] == "profile"
    assert steps(client, "3")["profile"][-1]["via"] == "bulk"
    # The conflict fell back to a single write, which resolved it as the live path does.
    conflict = steps(client, "4")["profile"][-1]
    assert "via" not in conflict
    assert dead["profile:4"]["reason"] == "identifier_conflict"
    assert steps(client, "5")["profile"][0]["outcome"] == "created"
    assert dead["address:5"]["reason"] == "invalid_postal_code"
    assert "profile:5" not in dead
    erased = steps(client, "7")["profile"][-1]
    assert (erased["outcome"], erased["reason"]) == ("skipped", "customer_deleted")
    assert stack.klaviyo.find_profiles(external_id="7") == []
    [six] = stack.klaviyo.find_profiles(external_id="6")
    assert six["attributes"]["first_name"] == "After"
    # No duplicates: the two conflicting ones, customers 1, 5 and 6, and the backlog.
    assert len(stack.klaviyo.all_profiles()) == 2 + 3 + BACKLOG
    problems = violations(stack.klaviyo.server.requests)
    assert problems == [], problems[:10]


def test_a_worker_killed_mid_batch_loses_nothing_and_doubles_nothing(
        make_stack: StackFactory, tmp_path: Path) -> None:
    """Every other setting at its default: the batch's step leases, the visibility timeout
    and the lost-task grace as a user runs them."""
    stack = burst_stack(make_stack)
    client = stack.redis()
    # The kill lands inside a batch's step: while it reads the profile ids back from
    # Klaviyo after the job completed, before it recorded any outcome.
    in_step = threading.Event()

    def slow_read_back(request: object, operation: str) -> None:
        if operation == "get_profiles":
            in_step.set()
            time.sleep(1.0)

    stack.klaviyo.interceptors.append(slow_read_back)
    ids = [str(n) for n in range(300, 300 + BACKLOG)]
    for cid in ids:
        stack.ipaas.put_customer(valid(int(cid)))
        enqueue_customer(cid)
    first = stack.start_worker(concurrency=2, log_path=str(tmp_path / "first.log"))
    assert in_step.wait(60), "no batch reached its read-back"
    kill_tree(first.pid)
    first.wait()
    stack.workers.remove(first)
    assert not all(steps(client, cid).get("profile") for cid in ids)  # truly mid-batch

    stack.start_worker(concurrency=2, log_path=str(tmp_path / "second.log"))
    # The step's lease (the task time limit and its grace) runs out, then the sweep or the
    # broker's redelivery resumes the batch: about two minutes with the defaults.
    wait_until(settled(client, {cid: {"profile", "address", "lists"} for cid in ids}), 240,
               "every customer after the kill")
    for cid in ids:
        assert len(stack.klaviyo.find_profiles(external_id=cid)) == 1, cid
        outcomes = [e["outcome"] for e in steps(client, cid)["profile"]]
        assert outcomes[0] == "created" and set(outcomes[1:]) <= {"updated", "unchanged"}
    assert len(stack.klaviyo.all_profiles()) == BACKLOG
    assert DeadLetterStore(client).count() == 0
    wait_until(lambda: client.zcard("ipk:burst:leases") == 0
               and client.hlen("ipk:burst:inflight") == 0, 60, "the batch finished")
    assert violations(stack.klaviyo.server.requests) == []


def test_a_429_on_the_bulk_import_tier_pauses_it_and_the_batch_goes_on(
        make_stack: StackFactory, tmp_path: Path) -> None:
    stack = burst_stack(make_stack)
    client = stack.redis()
    submitted: list[float] = []
    stack.klaviyo.interceptors.append(
        lambda request, operation: submitted.append(time.monotonic())
        if operation == "bulk_import_profiles" else None)
    stack.klaviyo.interceptors.append(Fault("bulk_import_profiles", 429, retry_after=3))
    ids = [str(n) for n in range(500, 500 + 15)]
    for cid in ids:
        stack.ipaas.put_customer(valid(int(cid)))
        enqueue_customer(cid)
    stack.start_worker(concurrency=2, log_path=str(tmp_path / "w.log"))
    wait_until(settled(client, {cid: {"profile"} for cid in ids}), 120, "every profile")
    assert all(steps(client, cid)["profile"][0]["via"] == "bulk" for cid in ids)
    # The job went again only after the Retry-After: the limiter paused the M tier for
    # every worker, and the batch's step waited for it in the scheduled set. (A customer
    # whose sync ran after the first flush may go in a job of its own.)
    assert len(submitted) >= 2 and submitted[1] - submitted[0] >= 2.5
    assert len(stack.klaviyo.all_profiles()) == len(ids)
