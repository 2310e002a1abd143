"""Every row of the seed's "Testing & Validation" table, end to end: a real Celery worker
process, real Redis, and both sandboxes as real HTTP servers."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from producers.manual_sync import enqueue_customer, wait_for_steps
from sandbox.local_stack import LocalStack
from sandbox.samples import DOUBLE_OPT_IN_LIST, SEED_LIST, SampleCase, sample_cases
from worker.adapters.dead_letters import DeadLetterStore
from worker.adapters.links import LinkStore

CASES = {case.customer_id: case for case in sample_cases()}


def sync(*customer_ids: str) -> dict[str, dict[str, dict]]:
    results = [(cid, enqueue_customer(cid)) for cid in customer_ids]
    return {cid: {o["step"]: o for o in wait_for_steps(r, timeout=60)} for cid, r in results}


def shown(outcome: dict | None) -> str | None:
    if outcome is None:
        return None
    if outcome["outcome"] == "rejected":
        return f"rejected:{outcome['reason']}"
    return outcome["outcome"]


@pytest.fixture(scope="module")
def first_run(stack: LocalStack) -> dict[str, dict[str, dict]]:
    cases = list(CASES.values())
    stack.seed(cases)
    return sync(*CASES)


@pytest.mark.parametrize("customer_id", list(CASES))
def test_seed_case_reaches_its_outcome(first_run: dict, customer_id: str) -> None:
    case: SampleCase = CASES[customer_id]
    steps = first_run[customer_id]
    assert shown(steps.get("profile")) == case.expect_profile
    assert shown(steps.get("address")) == case.expect_address
    assert shown(steps.get("lists")) == case.expect_lists


def profile_of(stack: LocalStack, first_run: dict, customer_id: str) -> dict:
    profile = stack.klaviyo.profile(first_run[customer_id]["profile"]["profile_id"])
    assert profile is not None
    return profile


def test_valid_customer_lands_with_e164_phone_and_billing_address(
    stack: LocalStack, first_run: dict
) -> None:
    attributes = profile_of(stack, first_run, "1001")["attributes"]
    assert attributes["email"] == "ana.silva@example.com"
    assert attributes["phone_number"] == "+12015550101"
    assert attributes["external_id"] == "1001"
    assert attributes["first_name"] == "Ana" and attributes["organization"]
    assert attributes["location"]["zip"] == "10017"
    assert attributes["location"]["country"] == "United States"
    assert attributes["properties"]["My Custom"] == "Example values"
    # The default mapping's static true arrives as a JSON boolean, not the text "true".
    assert attributes["properties"]["Claustrophobic List"] is True
    profile_id = first_run["1001"]["profile"]["profile_id"]
    assert stack.klaviyo.email_consent(profile_id) == "SUBSCRIBED"
    assert profile_id in stack.klaviyo.list_members(SEED_LIST)


def test_links_are_stored_and_written_back_to_ipaas(stack: LocalStack, first_run: dict) -> None:
    links = LinkStore(stack.redis())
    for cid in ("1001", "1004", "1011"):
        profile_id = first_run[cid]["profile"]["profile_id"]
        assert links.get(cid) == profile_id
        assert stack.ipaas.external_id(cid) == profile_id
    assert links.get("1003") is None


def test_phone_only_customer_is_matched_to_the_existing_profile(
    stack: LocalStack, first_run: dict
) -> None:
    matches = stack.klaviyo.find_profiles(phone_number="+12015550104")
    assert len(matches) == 1
    assert matches[0]["id"] == first_run["1004"]["profile"]["profile_id"]
    assert matches[0]["attributes"]["external_id"] == "1004"


def test_email_with_plus_matches_existing_profile_without_duplicate(
    stack: LocalStack, first_run: dict
) -> None:
    matches = stack.klaviyo.find_profiles(email="lee+vip@example.com")
    assert [m["id"] for m in matches] == [first_run["1011"]["profile"]["profile_id"]]
    assert matches[0]["attributes"]["last_name"] == "Park"


def test_subscribe_false_unsubscribes(stack: LocalStack, first_run: dict) -> None:
    profile_id = first_run["1006"]["profile"]["profile_id"]
    assert stack.klaviyo.email_consent(profile_id) == "UNSUBSCRIBED"
    assert profile_id not in stack.klaviyo.list_members(SEED_LIST)


def test_double_opt_in_list_sends_consent_email(stack: LocalStack, first_run: dict) -> None:
    profile_id = first_run["1007"]["profile"]["profile_id"]
    assert any(e["profile_id"] == profile_id for e in stack.klaviyo.consent_emails)
    assert profile_id not in stack.klaviyo.list_members(DOUBLE_OPT_IN_LIST)  # pending


def test_uclist_subscribes_at_once_without_consent_email(
    stack: LocalStack, first_run: dict
) -> None:
    profile_id = first_run["1008"]["profile"]["profile_id"]
    assert not any(e["profile_id"] == profile_id for e in stack.klaviyo.consent_emails)
    assert profile_id in stack.klaviyo.list_members(DOUBLE_OPT_IN_LIST)
    assert stack.klaviyo.email_consent(profile_id) == "SUBSCRIBED"


def test_bad_address_rejects_the_address_only(stack: LocalStack, first_run: dict) -> None:
    for cid in ("1009", "1010"):
        attributes = profile_of(stack, first_run, cid)["attributes"]
        assert attributes["email"]  # the profile itself synced
        assert not (attributes.get("location") or {}).get("address1")


def test_rejections_are_dead_lettered_without_personal_data(
    stack: LocalStack, first_run: dict
) -> None:
    store = DeadLetterStore(stack.redis())
    entries = {e["id"]: e for e in store.list()}
    assert entries["profile:1002"]["reason"] == "customer_not_found"
    assert entries["profile:1003"]["reason"] == "invalid_phone"
    assert entries["profile:1005"]["reason"] == "missing_identifier"
    assert entries["address:1009"]["reason"] == "invalid_postal_code"
    assert entries["address:1010"]["reason"] == "invalid_country"
    for entry in entries.values():
        for key in ("id", "customer_id", "step", "reason", "errors", "attempts",
                    "first_failed_at", "last_failed_at"):
            assert key in entry
    text = json.dumps(list(entries.values()))
    for secret in ("ben.okafor", "555-01", "Okafor", "ABCDE", "Atlantis", "Kowalski"):
        assert secret not in text


def test_resync_is_idempotent_and_keeps_klaviyo_side_unsubscribe(
    stack: LocalStack, first_run: dict
) -> None:
    profile_id = first_run["1001"]["profile"]["profile_id"]
    stack.klaviyo.set_consent(profile_id, "email", "UNSUBSCRIBED")
    before = len(stack.klaviyo.all_profiles())
    for cid in ("1001", "1004", "1011", "1007"):  # a real change, so each is an update
        record = dict(stack.ipaas.customer(cid) or {})
        record["last_name"] = f"{record['last_name']}-Updated"
        stack.ipaas.put_customer(record)
    again = sync("1001", "1004", "1011", "1007")
    assert len(stack.klaviyo.all_profiles()) == before
    assert again["1001"]["profile"]["outcome"] == "updated"
    assert again["1001"]["profile"]["profile_id"] == profile_id
    # The update collection carries no consent statics: the unsubscribe made in Klaviyo stays.
    assert stack.klaviyo.email_consent(profile_id) == "UNSUBSCRIBED"


def test_customer_fixed_in_ipaas_syncs_and_leaves_the_dead_letter_store(
    stack: LocalStack, first_run: dict
) -> None:
    record = dict(CASES["1003"].record or {})
    record["customer_number"] = "2015550103"
    stack.ipaas.put_customer(record)
    steps = sync("1003")["1003"]
    assert steps["profile"]["outcome"] == "created"
    assert DeadLetterStore(stack.redis()).get("profile:1003") is None


def run_cli(stack: LocalStack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "producers.cli", *args],
        env=stack.env(), capture_output=True, text=True, timeout=120,
    )


def test_dry_run_prints_payloads_and_writes_nothing(stack: LocalStack, first_run: dict) -> None:
    record = dict(CASES["1001"].record or {})
    record.update(id=2001, email_address="new.person@example.com", customer_number="2015550177")
    stack.ipaas.put_customer(record)
    writes_before = len([r for r in stack.klaviyo.server.requests if r.method != "GET"])
    done = run_cli(stack, "sync", "--dry-run", "2001")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["valid"] is True
    imports = [w for w in report["writes"] if w["operation"] == "create_or_update_profile"]
    assert imports[0]["body"]["data"]["attributes"]["phone_number"] == "+12015550177"
    assert "location" in imports[0]["body"]["data"]["attributes"]  # one call, address included
    assert imports[0]["body"]["data"]["attributes"]["properties"]["Claustrophobic List"] is True
    assert '"Claustrophobic List": true' in done.stdout
    assert not [w for w in report["writes"] if w["operation"] == "update_profile"]
    assert len([r for r in stack.klaviyo.server.requests if r.method != "GET"]) == writes_before
    assert LinkStore(stack.redis()).get("2001") is None
    assert stack.ipaas.external_id("2001") is None


def test_dry_run_lists_every_problem(stack: LocalStack, first_run: dict) -> None:
    record = dict(CASES["1001"].record or {})
    record.update(id=2002, email_address="not-an-email", first_name=None)
    stack.ipaas.put_customer(record)
    done = run_cli(stack, "sync", "--dry-run", "2002")
    assert done.returncode == 1
    report = json.loads(done.stdout)
    fields = {(e["field"], e["reason"]) for e in report["steps"]["profile"]["errors"]}
    assert ("Email", "invalid_email") in fields
    assert ("FirstName", "missing_required_field") in fields


def test_sync_wait_exit_codes_and_status(stack: LocalStack, first_run: dict) -> None:
    ok = run_cli(stack, "sync", "--wait", "--force", "1001")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "profile\tupdated" in ok.stdout
    bad = run_cli(stack, "sync", "--wait", "1005")
    assert bad.returncode == 1
    assert "missing_identifier" in bad.stdout
    status = run_cli(stack, "status", "1001", "--json")
    assert json.loads(status.stdout)["profile_id"] == first_run["1001"]["profile"]["profile_id"]
    listed = json.loads(run_cli(stack, "dlq", "list", "--json").stdout)
    assert any(e["id"] == "profile:1005" for e in listed)
    shown_entry = run_cli(stack, "dlq", "show", "profile:1005", "--json")
    assert json.loads(shown_entry.stdout)["reason"] == "missing_identifier"


def test_unchanged_update_makes_no_klaviyo_call_unless_forced(
    stack: LocalStack, first_run: dict
) -> None:
    sync("1006")  # whatever changed before, this one brings Klaviyo up to date
    writes = stack.klaviyo.call_counts["create_or_update_profile"]
    steps = sync("1006")["1006"]
    assert steps["profile"]["outcome"] == "unchanged"
    assert "address" not in steps and "lists" not in steps
    assert stack.klaviyo.call_counts["create_or_update_profile"] == writes
    forced = wait_for_steps(enqueue_customer("1006", force=True), timeout=60)
    assert forced[0]["outcome"] == "updated"
    assert stack.klaviyo.call_counts["create_or_update_profile"] == writes + 1
