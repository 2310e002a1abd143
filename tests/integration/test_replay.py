"""Dead-letter replay and purge end to end: the real CLI as a subprocess, a real Celery worker,
real Redis and both sandboxes. Each test dead-letters its own customers and starts from an
empty dead-letter store, so the tests do not depend on each other's order."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from producers.manual_sync import enqueue_customer, wait_for_steps
from sandbox.klaviyo_faults import Fault, body_contains
from sandbox.local_stack import LocalStack
from sandbox.samples import address, customer
from tests.support import wait_settled
from worker.adapters.dead_letters import DeadLetterStore
from worker.adapters.history import HistoryStore
from worker.adapters.links import LinkStore

pytestmark = pytest.mark.integration

BAD_PHONE = "555-01"


def run_cli(stack: LocalStack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "producers.cli", *args], env=stack.env(),
                          capture_output=True, text=True, timeout=120)


def store(stack: LocalStack) -> DeadLetterStore:
    return DeadLetterStore(stack.redis())


@pytest.fixture(autouse=True)
def empty_store(stack: LocalStack) -> None:
    dlq = store(stack)
    for entry in dlq.list():
        dlq.remove(entry["id"])


def person(customer_id: int, phone: str | None = "", email: str | None = "",
           **kw: Any) -> dict[str, Any]:
    """A customer; email and phone default to valid ones unique to the id, so no test's
    customer matches another's Klaviyo profile."""
    email = f"c{customer_id}@example.com" if email == "" else email
    phone = fixed_phone(customer_id) if phone == "" else phone
    return customer(customer_id, "Ana", f"Test{customer_id}", email, phone, **kw)


def fixed_phone(customer_id: int) -> str:
    return f"2015554{customer_id % 1000:03d}"


def sync_and_wait(stack: LocalStack, *records: dict[str, Any]) -> dict[str, dict[str, dict]]:
    for record in records:
        stack.ipaas.put_customer(record)
    results = [(str(r["id"]), enqueue_customer(str(r["id"]))) for r in records]
    return {cid: {o["step"]: o for o in wait_for_steps(r, timeout=90)} for cid, r in results}


def replayed_steps(stack: LocalStack, customer_id: str, steps: set[str],
                   timeout: float = 90.0) -> dict[str, dict[str, Any]]:
    """The final outcome of each step run by a replay (its tracking guid says so)."""
    history = HistoryStore(stack.redis())
    deadline = time.monotonic() + timeout
    while True:
        found = {h["step"]: h for h in reversed(history.recent(customer_id, limit=50))
                 if (h.get("tracking_guid") or "").startswith("replay-")
                 and h["outcome"] != "retrying"}
        if steps <= found.keys():
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"replay of {customer_id} did not finish: {found}")
        time.sleep(0.1)


def test_replay_by_reason_syncs_the_fixed_customers_and_empties_their_entries(
    stack: LocalStack,
) -> None:
    first = sync_and_wait(stack, person(4101, BAD_PHONE), person(4102, BAD_PHONE),
                          person(4103, None, email="not-an-email"))
    assert first["4101"]["profile"]["reason"] == "invalid_phone"
    assert first["4103"]["profile"]["reason"] == "invalid_email"
    stack.ipaas.put_customer(person(4101))
    stack.ipaas.put_customer(person(4102))

    done = run_cli(stack, "dlq", "replay", "--reason", "invalid_phone")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert sorted(line.split(" as task ")[0] for line in lines[:-1]) == [
        "replayed profile:4101", "replayed profile:4102"]
    assert lines[-1] == "2 replayed, 0 not replayed"

    for cid, phone in (("4101", "+12015554101"), ("4102", "+12015554102")):
        steps = replayed_steps(stack, cid, {"profile", "address", "lists"})
        assert steps["profile"]["outcome"] == "created"
        assert {steps["address"]["outcome"], steps["lists"]["outcome"]} <= {"synced", "skipped"}
        profile = stack.klaviyo.profile(steps["profile"]["profile_id"])
        assert profile is not None and profile["attributes"]["phone_number"] == phone
        assert LinkStore(stack.redis()).get(cid) == steps["profile"]["profile_id"]
        assert store(stack).for_customer(cid) == []
    untouched = store(stack).get("profile:4103")
    assert untouched is not None and untouched["attempts"] == 1


def test_replay_of_an_unknown_id_says_so_and_still_replays_the_others(
    stack: LocalStack,
) -> None:
    sync_and_wait(stack, person(4111, BAD_PHONE))
    stack.ipaas.put_customer(person(4111))
    done = run_cli(stack, "dlq", "replay", "profile:4111", "profile:no-such")
    assert done.returncode == 1
    assert "no dead-letter entry profile:no-such" in done.stderr
    assert done.stdout.startswith("replayed profile:4111 as task ")
    assert replayed_steps(stack, "4111", {"profile"})["profile"]["outcome"] == "created"
    assert store(stack).get("profile:4111") is None

    alone = run_cli(stack, "dlq", "replay", "profile:no-such")
    assert alone.returncode == 1
    assert "no dead-letter entry profile:no-such" in alone.stderr


def test_replay_since_leaves_older_entries_alone(stack: LocalStack) -> None:
    three_hours_ago = datetime.now(UTC) - timedelta(hours=3)
    old_store = DeadLetterStore(stack.redis(), now=lambda: three_hours_ago)
    old_store.record(customer_id="4121", step="profile", reason="invalid_phone", errors=[])
    sync_and_wait(stack, person(4122, BAD_PHONE))
    stack.ipaas.put_customer(person(4122))

    done = run_cli(stack, "dlq", "replay", "--since", "1h")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].startswith("replayed profile:4122 as task ")
    assert "4121" not in done.stdout
    assert replayed_steps(stack, "4122", {"profile"})["profile"]["outcome"] == "created"
    assert store(stack).get("profile:4122") is None
    assert store(stack).get("profile:4121") is not None

    iso = (three_hours_ago - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S")  # naive: UTC
    listed = run_cli(stack, "dlq", "purge", "--since", iso)
    assert listed.returncode == 0, listed.stderr
    assert store(stack).get("profile:4121") is None


def test_replay_all_needs_all_and_replays_everything(stack: LocalStack) -> None:
    sync_and_wait(stack, person(4131, BAD_PHONE), person(4132, None, email="not-an-email"))
    for usage in (["dlq", "replay"], ["dlq", "replay", "--all", "--reason", "invalid_phone"],
                  ["dlq", "replay", "profile:4131", "--all"],
                  ["dlq", "replay", "--reason", "no_such_reason"],
                  ["dlq", "replay", "--since", "last tuesday"]):
        refused = run_cli(stack, *usage)
        assert refused.returncode == 2, usage
        assert refused.stderr and refused.stdout == ""
    assert store(stack).count() == 2

    stack.ipaas.put_customer(person(4131))
    stack.ipaas.put_customer(person(4132))
    done = run_cli(stack, "dlq", "replay", "--all")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "2 replayed, 0 not replayed"
    for cid in ("4131", "4132"):
        assert replayed_steps(stack, cid, {"profile"})["profile"]["outcome"] == "created"
    assert store(stack).count() == 0


def test_an_address_entry_replays_through_apply_address_with_its_context(
    stack: LocalStack,
) -> None:
    bad = person(4141, addresses=[address(postal_code="ABCDE")])
    first = sync_and_wait(stack, bad)["4141"]
    assert first["address"]["reason"] == "invalid_postal_code"
    profile_id = first["profile"]["profile_id"]
    # What the address task records when it dead-letters (its ids travel with the entry).
    entry = store(stack).record(
        customer_id="4141", step="address", reason="invalid_postal_code", errors=[],
        context={"profile_id": profile_id, "collection": "add"},
    )
    assert entry["context"]["profile_id"] == profile_id
    stack.ipaas.put_customer(person(4141, addresses=[address(postal_code="10018")]))
    profile_calls = stack.klaviyo.call_counts.get("create_or_update_profile", 0)

    done = run_cli(stack, "dlq", "replay", "address:4141")
    assert done.returncode == 0, done.stderr
    steps = replayed_steps(stack, "4141", {"address"})
    assert steps["address"]["outcome"] == "synced"
    wait_settled(stack.redis())  # a whole-pipeline run would have shown its profile step
    assert "profile" not in replayed_steps(stack, "4141", {"address"})
    profile = stack.klaviyo.profile(profile_id)
    assert profile is not None and profile["attributes"]["location"]["zip"] == "10018"
    assert store(stack).get("address:4141") is None
    assert stack.klaviyo.call_counts.get("create_or_update_profile", 0) == profile_calls


def test_the_worker_records_the_ids_an_address_replay_needs(stack: LocalStack) -> None:
    # Needs run_step (worker/tasks/steps.py) to pass context= when it dead-letters a step.
    first = sync_and_wait(stack, person(4142, addresses=[address(country="Atlantis")]))["4142"]
    profile_id = first["profile"]["profile_id"]
    entry = store(stack).get("address:4142")
    assert entry is not None and entry["reason"] == "invalid_country"
    assert entry.get("context") == {"profile_id": profile_id, "collection": "add"}
    profile_calls = stack.klaviyo.call_counts.get("create_or_update_profile", 0)
    stack.ipaas.put_customer(person(4142))

    done = run_cli(stack, "dlq", "replay", "--reason", "invalid_country")
    assert done.returncode == 0, done.stderr
    assert replayed_steps(stack, "4142", {"address"})["address"]["outcome"] == "synced"
    assert store(stack).get("address:4142") is None
    assert stack.klaviyo.call_counts.get("create_or_update_profile", 0) == profile_calls


def test_replay_gives_a_fresh_retry_budget(stack: LocalStack) -> None:
    fault = Fault("create_or_update_profile", 503, times=None,
                  match=body_contains('"external_id":"4151"'))
    stack.klaviyo.interceptors.append(fault)
    try:
        first = sync_and_wait(stack, person(4151))["4151"]
        assert first["profile"]["reason"] == "retries_exhausted"
        assert fault.fired == 4  # SYNC_MAX_ATTEMPTS in the local stack
        fault.times = fault.fired + 3  # three more refusals: the 4th attempt of a fresh budget
        done = run_cli(stack, "dlq", "replay", "--reason", "retries_exhausted")
        assert done.returncode == 0, done.stderr
        steps = replayed_steps(stack, "4151", {"profile"})
    finally:
        stack.klaviyo.interceptors.remove(fault)
    assert steps["profile"]["outcome"] == "created"
    assert fault.fired == 7
    assert store(stack).get("profile:4151") is None


def test_a_replay_that_fails_again_is_dead_lettered_afresh(stack: LocalStack) -> None:
    sync_and_wait(stack, person(4161, BAD_PHONE))
    done = run_cli(stack, "dlq", "replay", "profile:4161")  # data not fixed
    assert done.returncode == 0, done.stderr
    steps = replayed_steps(stack, "4161", {"profile"})
    assert steps["profile"]["reason"] == "invalid_phone"
    entry = store(stack).get("profile:4161")
    assert entry is not None and entry["attempts"] == 1  # a new entry for the new failure


@pytest.mark.parametrize("selector", [["profile:4171", "lists:4172"], ["--reason", "unknown_list"],
                                      ["--since", "30m"], ["--all"]])
def test_purge_deletes_the_selected_entries_without_replaying(
    stack: LocalStack, selector: list[str]
) -> None:
    dlq = store(stack)
    old = DeadLetterStore(stack.redis(), now=lambda: datetime.now(UTC) - timedelta(hours=2))
    old.record(customer_id="4170", step="profile", reason="invalid_email", errors=[])
    dlq.record(customer_id="4171", step="profile", reason="unknown_list", errors=[])
    dlq.record(customer_id="4172", step="lists", reason="unknown_list", errors=[],
               context={"profile_id": "01P", "collection": "add"})
    done = run_cli(stack, "dlq", "purge", *selector)
    assert done.returncode == 0, done.stderr
    remaining = {e["id"] for e in dlq.list()}
    expected = set() if selector == ["--all"] else {"profile:4170"}
    assert remaining == expected
    purged = 3 - len(expected)
    assert done.stdout.splitlines()[-1] == f"{purged} purged"
    assert len([line for line in done.stdout.splitlines() if line.startswith("purging ")]) \
        == purged
    # Nothing was replayed: no step ran for the purged customers. (Klaviyo's call counts are
    # no measure here: a batched flush left by an earlier test may still be going out.)
    wait_settled(stack.redis())
    assert HistoryStore(stack.redis()).recent("4171") == []
    assert HistoryStore(stack.redis()).recent("4172") == []
    assert stack.klaviyo.find_profiles(external_id="4171") == []


def test_purge_of_an_unknown_id_says_so(stack: LocalStack) -> None:
    store(stack).record(customer_id="4181", step="profile", reason="invalid_email", errors=[])
    done = run_cli(stack, "dlq", "purge", "profile:4181", "profile:4189")
    assert done.returncode == 1
    assert "no dead-letter entry profile:4189" in done.stderr
    assert store(stack).count() == 0


def test_status_shows_the_link_and_the_replayed_history(stack: LocalStack) -> None:
    sync_and_wait(stack, person(4191, BAD_PHONE))
    stack.ipaas.put_customer(person(4191))
    run_cli(stack, "dlq", "replay", "profile:4191")
    profile_id = replayed_steps(stack, "4191", {"profile", "address", "lists"})["profile"][
        "profile_id"]

    done = run_cli(stack, "status", "4191")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"customer 4191: Klaviyo profile {profile_id}"
    history = [line.split() for line in lines[1:]]
    assert [row[1:] for row in history if row[1] == "profile"] == [
        ["profile", "created"], ["profile", "rejected", "invalid_phone"]]
    assert all(datetime.fromisoformat(row[0]) for row in history)

    as_json = json.loads(run_cli(stack, "status", "4191", "--json").stdout)
    assert as_json["profile_id"] == profile_id and as_json["dead_letters"] == []
    guids = [h["tracking_guid"] or "" for h in as_json["history"]]
    assert guids[0].startswith("replay-") and not guids[-1].startswith("replay-")
