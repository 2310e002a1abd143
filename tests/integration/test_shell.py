"""The admin shell's helpers, called through ``build_namespace`` as the shell would, and the
``ipaas-klaviyo shell`` command itself with input piped on stdin. A real worker, real Redis
and both sandboxes."""

from __future__ import annotations

import ast
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from producers.shell import HELP, build_namespace
from sandbox.embedded_redis import EmbeddedRedis
from sandbox.local_stack import LocalStack
from sandbox.samples import customer
from worker.adapters.history import HistoryStore
from worker.adapters.links import LinkStore
from worker.adapters.scheduled import ScheduledSteps, Waiting
from worker.adapters.task_ledger import LedgerEntry, TaskLedger
from worker.config import Settings
from worker.services.replay import ReplayReport, SelectionError

pytestmark = pytest.mark.integration

HELPERS = [name.split("(")[0] for name, _ in HELP]


@pytest.fixture
def shell(stack: LocalStack) -> dict[str, Any]:
    namespace = build_namespace(Settings.from_env(stack.env()))
    for entry in namespace["dlq"].list():  # each test starts from an empty store
        namespace["dlq"].remove(entry["id"])
    return namespace


def person(customer_id: int, phone: str) -> dict[str, Any]:
    return customer(customer_id, "Ana", f"Shell{customer_id}", f"s{customer_id}@example.com",
                    phone)


def wait_for_replayed_profile(stack: LocalStack, customer_id: str) -> dict[str, Any]:
    history = HistoryStore(stack.redis())
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        for h in history.recent(customer_id):
            if (h["tracking_guid"] or "").startswith("replay-") and h["step"] == "profile" \
                    and h["outcome"] != "retrying":
                return h
        time.sleep(0.1)
    raise TimeoutError(f"no replayed profile step for {customer_id}")


def test_every_helper_is_there_with_a_one_line_help(
    shell: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert set(HELPERS) <= shell.keys()
    assert all(doc and "\n" not in doc for _, doc in HELP)
    shell["help_"]()
    printed = capsys.readouterr().out.splitlines()
    assert [line.split()[0].split("(")[0] for line in printed] == HELPERS


def test_sync_link_and_status(stack: LocalStack, shell: dict[str, Any]) -> None:
    stack.ipaas.put_customer(person(4201, "2015556201"))
    outcomes = shell["sync"]("4201", wait=True)["4201"]
    profile_id = outcomes[0]["profile_id"]
    assert [o["step"] for o in outcomes] == ["profile", "address", "lists"]
    assert outcomes[0]["outcome"] == "created"
    assert shell["link"]("4201") == profile_id == LinkStore(stack.redis()).get("4201")
    status = shell["status"](4201)
    assert status["profile_id"] == profile_id and status["dead_letters"] == []
    assert {h["step"] for h in status["history"]} == {"profile", "address", "lists"}
    assert shell["link"]("4209") is None

    queued = shell["sync"]("4201")
    assert list(queued) == ["4201"] and isinstance(queued["4201"], str)


def test_dead_letters_replay_and_purge(
    stack: LocalStack, shell: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    stack.ipaas.put_customer(person(4211, "555-01"))
    stack.ipaas.put_customer(person(4212, "555-02"))
    shell["sync"]("4211", "4212", wait=True)
    assert {e["id"] for e in shell["dead_letters"](reason="invalid_phone")} == {
        "profile:4211", "profile:4212"}
    assert shell["dead_letters"](reason="invalid_email") == []
    capsys.readouterr()

    stack.ipaas.put_customer(person(4211, "2015556211"))
    report = shell["replay"]("profile:4211", "profile:4219")
    assert isinstance(report, ReplayReport) and [i for i, _ in report.replayed] == [
        "profile:4211"]
    printed = capsys.readouterr().out
    assert "no dead-letter entry profile:4219" in printed
    assert "replayed profile:4211 as task" in printed and "1 replayed, 0 not replayed" in printed
    assert wait_for_replayed_profile(stack, "4211")["outcome"] == "created"
    assert shell["dlq"].get("profile:4211") is None

    with pytest.raises(SelectionError):
        shell["purge"]()
    assert shell["purge"](reason="invalid_phone") == 1
    assert shell["dlq"].count() == 0


@pytest.fixture
def spare_db(redis_server: EmbeddedRedis) -> Iterator[str]:
    """A database of the run's Redis that no worker reads, so queued messages stay put."""
    url = redis_server.url.rsplit("/", 1)[0] + "/7"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


def test_queues_counts_waiting_and_unacknowledged_messages(spare_db: str) -> None:
    client = redis.Redis.from_url(spare_db, decode_responses=True)
    client.lpush("profiles", "m1", "m2", "m3")
    client.lpush("profiles\x06\x166", "urgent")  # kombu keeps other priorities apart
    client.lpush("lists", "m4")
    client.hset("unacked", mapping={"tag1": "{}", "tag2": "{}"})
    client.lpush("celery", "not ours")
    scheduled = ScheduledSteps(client)
    scheduled.schedule("r1", "profiles", "m5", time.time() + 60,
                       waiting=Waiting("r1", "t", "profile", "profile:7", 0.0, 2, 8, "503"))
    scheduled.schedule("d1", "lists", "m6", time.time() + 2)  # a batch window, not a retry
    namespace = build_namespace(Settings(redis_url=spare_db))
    assert namespace["queues"]() == {"profiles": 4, "addresses": 0, "lists": 1,
                                     "transactions": 0, "unacked": 2, "retrying": 1}
    client.close()


def test_open_steps_counts_the_ledger_and_lists_what_is_due(spare_db: str) -> None:
    client = redis.Redis.from_url(spare_db, decode_responses=True)
    ledger = TaskLedger(client)
    ledger.record("late", LedgerEntry("ipaas_klaviyo.sync_customer", "profiles",
                                      {"customer_id": "9"}), time.time() - 10)
    ledger.record("fresh", LedgerEntry("ipaas_klaviyo.apply_address", "addresses",
                                       {"customer_id": "9"}), time.time() + 300)
    got = build_namespace(Settings(redis_url=spare_db))["open_steps"]()
    assert got == {"open": 2, "due": [{"task_id": "late", "task": "ipaas_klaviyo.sync_customer",
                                       "kwargs": {"customer_id": "9"}, "resent": 0}]}
    client.close()


def test_shell_command_reads_piped_input(stack: LocalStack) -> None:
    LinkStore(stack.redis()).set("4231", "01SHELLPROFILE")
    script = "print(queues())\nprint(link('4231'))\nprint(len(dlq.list()))\n"
    done = subprocess.run([sys.executable, "-m", "producers.cli", "shell"], input=script,
                          env=stack.env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    # stdout holds the prompts (">>> ") and what the statements printed.
    lines = [text.strip() for text in done.stdout.split(">>> ") if text.strip()]
    depths = ast.literal_eval(lines[0])
    assert set(depths) == {"profiles", "addresses", "lists", "transactions", "unacked",
                           "retrying"}
    assert all(isinstance(n, int) and n >= 0 for n in depths.values())
    assert lines[1] == "01SHELLPROFILE"
    assert lines[2].isdigit()
    for name in HELPERS:
        assert f"  {name}" in done.stderr  # the banner lists every helper
    assert "Traceback" not in done.stderr
