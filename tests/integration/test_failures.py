"""Failures end to end: throttling, outages, refusals and conflicts each end where they
should — synced after retries, or in the dead-letter store with an actionable reason."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from producers.manual_sync import enqueue_customer, wait_for_steps
from sandbox.klaviyo_faults import Fault, body_contains
from sandbox.local_stack import LocalStack
from sandbox.samples import customer
from worker.adapters.dead_letters import DeadLetterStore
from worker.adapters.history import HistoryStore


def sync_one(stack: LocalStack, record: dict) -> dict[str, dict]:
    stack.ipaas.put_customer(record)
    outcomes = wait_for_steps(enqueue_customer(str(record["id"])), timeout=90)
    return {o["step"]: o for o in outcomes}


def profile_fault(stack: LocalStack, customer_id: int, status: int, **kw: object) -> Fault:
    fault = Fault("create_or_update_profile", status,
                  match=body_contains(f'"external_id":"{customer_id}"'), **kw)  # type: ignore[arg-type]
    stack.klaviyo.interceptors.append(fault)
    return fault


def test_new_customer_costs_one_profile_import_and_no_lookups(stack: LocalStack) -> None:
    before = dict(stack.klaviyo.call_counts)
    steps = sync_one(stack, customer(3001, "Ola", "Nord", "ola.nord@example.com", "2015550131"))
    assert steps["profile"]["outcome"] == "created"
    after = stack.klaviyo.call_counts
    assert after["create_or_update_profile"] - before.get("create_or_update_profile", 0) == 1
    assert after["get_profiles"] - before.get("get_profiles", 0) == 0


def test_throttled_upsert_waits_retry_after_and_succeeds(stack: LocalStack) -> None:
    fault = profile_fault(stack, 3002, 429, times=2, retry_after=1)
    steps = sync_one(stack, customer(3002, "Pia", "Berg", "pia.berg@example.com", None))
    assert steps["profile"]["outcome"] == "created"
    assert fault.fired == 2
    history = HistoryStore(stack.redis()).recent("3002")
    assert [h["outcome"] for h in history if h["step"] == "profile"][-2:] == [
        "retrying", "retrying"]
    assert DeadLetterStore(stack.redis()).get("profile:3002") is None


def test_lasting_outage_ends_as_retries_exhausted(stack: LocalStack) -> None:
    fault = profile_fault(stack, 3003, 503, times=None)
    steps = sync_one(stack, customer(3003, "Rui", "Costa", "rui.costa@example.com", None))
    assert steps["profile"]["outcome"] == "rejected"
    assert steps["profile"]["reason"] == "retries_exhausted"
    assert fault.fired == 4  # SYNC_MAX_ATTEMPTS in the local stack
    entry = DeadLetterStore(stack.redis()).get("profile:3003")
    assert entry is not None and "503" in entry["last_error"]


def test_klaviyo_refusal_is_not_retried_and_names_the_field(stack: LocalStack) -> None:
    fault = profile_fault(stack, 3004, 400, times=None, pointer="/data/attributes/email")
    steps = sync_one(stack, customer(3004, "Sol", "Vega", "sol.vega@example.com", None))
    assert steps["profile"]["reason"] == "klaviyo_rejected"
    assert fault.fired == 1
    entry = DeadLetterStore(stack.redis()).get("profile:3004")
    assert entry is not None
    assert [e["field"] for e in entry["errors"]] == ["email"]
    assert "sol.vega" not in str(entry)


def test_email_and_phone_of_two_different_profiles_is_an_identifier_conflict(
    stack: LocalStack,
) -> None:
    stack.klaviyo.add_profile(email="tam.quist@example.com")
    stack.klaviyo.add_profile(phone_number="+12015550135")
    profiles_before = len(stack.klaviyo.all_profiles())
    steps = sync_one(stack, customer(3005, "Tam", "Quist", "tam.quist@example.com",
                                     "2015550135"))
    assert steps["profile"]["reason"] == "identifier_conflict"
    assert len(stack.klaviyo.all_profiles()) == profiles_before


def test_stale_link_is_re_resolved(stack: LocalStack) -> None:
    stack.redis().hset("ipk:links", "3006", "01HZZZZZZZZZZZZZZZZZZZZZZZ")
    steps = sync_one(stack, customer(3006, "Uma", "Roy", "uma.roy@example.com", None))
    assert steps["profile"]["outcome"] == "created"
    new_id = steps["profile"]["profile_id"]
    assert new_id != "01HZZZZZZZZZZZZZZZZZZZZZZZ"
    assert stack.redis().hget("ipk:links", "3006") == new_id


def test_worker_logs_one_line_per_step_without_personal_data(stack: LocalStack) -> None:
    sync_one(stack, customer(3007, "Vic", "Hale", "vic.hale@example.com", "2015550137"))
    log = Path(stack.log_path or "").read_text()
    lines = [json.loads(line[line.index("{"):]) for line in log.splitlines()
             if '"customer_id": "3007"' in line]
    assert {(entry["step"], entry["outcome"]) for entry in lines} == {
        ("profile", "created"), ("address", "synced"), ("lists", "synced")}
    assert all(entry["duration_ms"] >= 0 and "tracking_guid" in entry for entry in lines)
    assert "vic.hale" not in log and "5550137" not in log and "Hale" not in log


def test_bad_mapping_file_stops_the_worker_naming_the_line(
    stack: LocalStack, tmp_path: Path
) -> None:
    bad = tmp_path / "my-mapping.yaml"
    bad.write_text("add:\n  - {type: field, source: EmailAddress, destination: Email}\n"
                   "  - {type: formula, formula: GetFoo, destination: X}\nupdate: []\n")
    env = {**stack.env(), "MAPPING_FILE": str(bad)}
    done = subprocess.run([sys.executable, "-m", "producers.cli", "worker"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "my-mapping.yaml line 3" in done.stderr
    assert "GetFoo" in done.stderr


@pytest.fixture(autouse=True)
def _clear_faults(stack: LocalStack) -> None:
    stack.klaviyo.interceptors.clear()
