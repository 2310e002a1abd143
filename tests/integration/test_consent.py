"""SubscribeProfile = true gives email marketing consent, with a real worker, the bundled
default mapping and the default settings: whatever the opt-in process of the list the seed
mapping joins ("Sms Subscribers"), and on an account whose own default is double opt-in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from producers.demo import consent_state
from producers.manual_sync import enqueue_customer
from sandbox.local_stack import LocalStack
from sandbox.samples import DOUBLE_OPT_IN_LIST, SEED_LIST, customer
from tests.contract.openapi_contract import violations
from tests.integration.conftest import StackFactory
from worker.adapters.dead_letters import DeadLetterStore

SUBSCRIBE_PATH = "/api/profile-subscription-bulk-create-jobs"


def with_lists(stack: LocalStack, seed_list_opt_in: str,
               account_opt_in: str = "single_opt_in") -> str:
    """The Klaviyo account under test: its default opt-in and the seed list's. Returns the
    seed list's id. (The stack starts with a single opt-in seed list: set it again here.)"""
    stack.klaviyo.reset()
    stack.klaviyo.account_opt_in_process = account_opt_in
    list_id = stack.klaviyo.add_list(SEED_LIST, seed_list_opt_in)
    stack.klaviyo.add_list(DOUBLE_OPT_IN_LIST, "double_opt_in")
    stack.klaviyo.server.record_requests = True  # for the contract check and the bodies
    return list_id


def sync_new_customers(stack: LocalStack, first: int, count: int, tmp_path: Path
                       ) -> dict[str, str]:
    """Customers new to Klaviyo (the add collection: SubscribeProfile and LIST_Sms
    Subscribers both true); returns customer id -> profile id once every step is done."""
    ids = [str(first + n) for n in range(count)]
    for n in range(count):
        stack.ipaas.put_customer(customer(first + n, f"F{n}", f"L{n}",
                                          f"consent{first + n}@example.com", None))
    stack.start_worker(concurrency=2, log_path=str(tmp_path / "worker.log"))
    for cid in ids:
        enqueue_customer(cid)
    outcomes = stack.wait_for_outcomes(ids, timeout=180)
    assert all(steps["lists"]["outcome"] == "synced" for steps in outcomes.values()), outcomes
    assert DeadLetterStore(stack.redis()).count() == 0
    return {cid: steps["profile"]["profile_id"] for cid, steps in outcomes.items()}


def subscribe_jobs(stack: LocalStack) -> list[dict[str, Any]]:
    return [r.json()["data"] for r in stack.klaviyo.server.requests
            if r.method == "POST" and r.path == SUBSCRIBE_PATH]


def job_list(job: dict[str, Any]) -> str | None:
    return job.get("relationships", {}).get("list", {}).get("data", {}).get("id")


def assert_within_contract(stack: LocalStack) -> None:
    problems = violations(stack.klaviyo.server.requests)
    assert problems == [], "\n".join(problems[:20])


@pytest.mark.parametrize("settings", [
    {},  # the defaults: batched, 2 s window
    # Batching off: the unbatched path must reach the same state.
    {"SUBSCRIPTION_BATCH_WINDOW_SECONDS": "0"},
], ids=["batched", "unbatched"])
def test_double_opt_in_seed_list_still_gives_consent(
    make_stack: StackFactory, tmp_path: Path, settings: dict[str, str]
) -> None:
    stack = make_stack(**settings)
    list_id = with_lists(stack, "double_opt_in")
    profiles = sync_new_customers(stack, 61000, 12, tmp_path)

    for profile_id in profiles.values():
        assert stack.klaviyo.email_consent(profile_id) == "SUBSCRIBED"
        # The list subscription waits for the person to confirm it.
        assert stack.klaviyo.pending_opt_ins(profile_id) == {list_id}
        assert profile_id not in stack.klaviyo.list_members(SEED_LIST)
    jobs = subscribe_jobs(stack)
    with_list = [j for j in jobs if job_list(j) == list_id]
    without_list = [j for j in jobs if job_list(j) is None]
    assert len(with_list) + len(without_list) == len(jobs)
    rows = sum(len(j["attributes"]["profiles"]["data"]) for j in without_list)
    assert rows == 12  # every customer's consent went in a job without a list
    if settings:
        assert len(jobs) == 24  # unbatched: two calls per customer
    else:
        assert len(jobs) <= 8, len(jobs)  # batched across customers (measured: 2)
    assert_within_contract(stack)

    someone = next(iter(profiles.values()))
    assert consent_state(stack.klaviyo, someone) == "email SUBSCRIBED (list pending)"  # demo
    assert stack.klaviyo.confirm_opt_in(someone) == 1
    assert someone in stack.klaviyo.list_members(SEED_LIST)
    assert consent_state(stack.klaviyo, someone) == "email SUBSCRIBED"


def test_single_opt_in_seed_list_carries_the_consent_in_one_job(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    # Batching off so "one job per customer" is counted exactly.
    stack = make_stack(SUBSCRIPTION_BATCH_WINDOW_SECONDS="0")
    list_id = with_lists(stack, "single_opt_in")
    profiles = sync_new_customers(stack, 62000, 4, tmp_path)

    jobs = subscribe_jobs(stack)
    assert [job_list(j) for j in jobs] == [list_id] * 4
    for profile_id in profiles.values():
        assert stack.klaviyo.email_consent(profile_id) == "SUBSCRIBED"
        assert profile_id in stack.klaviyo.list_members(SEED_LIST)
    assert stack.klaviyo.consent_emails == []
    assert_within_contract(stack)


def test_double_opt_in_account_leaves_consent_pending_until_the_person_confirms(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    stack = make_stack()
    list_id = with_lists(stack, "double_opt_in", account_opt_in="double_opt_in")
    profiles = sync_new_customers(stack, 63000, 3, tmp_path)

    for profile_id in profiles.values():
        assert stack.klaviyo.email_consent(profile_id) == "NEVER_SUBSCRIBED"
        assert stack.klaviyo.pending_opt_ins(profile_id) == {list_id, None}
        sent = {e["list_id"] for e in stack.klaviyo.consent_emails
                if e["profile_id"] == profile_id}
        assert sent == {list_id, None}  # the list's confirmation and the account's
    someone = next(iter(profiles.values()))
    assert consent_state(stack.klaviyo, someone) == (
        "email NEVER_SUBSCRIBED (consent and list pending)")
    stack.klaviyo.confirm_opt_in(someone)
    assert stack.klaviyo.email_consent(someone) == "SUBSCRIBED"
    assert someone in stack.klaviyo.list_members(SEED_LIST)
    others = [p for p in profiles.values() if p != someone]
    assert all(stack.klaviyo.email_consent(p) == "NEVER_SUBSCRIBED" for p in others)
    assert_within_contract(stack)
