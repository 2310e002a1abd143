"""Transactions end to end: a real Celery worker, real Redis, both sandboxes on loopback.
Every Klaviyo request is checked against the spec by the ``stack`` fixture."""

from __future__ import annotations

import os
from typing import Any

import pytest

from sandbox.local_stack import LocalStack
from sandbox.samples import customer
from sandbox.transaction_samples import order
from worker import bootstrap
from worker.adapters.dead_letters import DeadLetterStore
from worker.adapters.links import LinkStore
from worker.core import reasons
from worker.tasks.transactions import history_subject, sync_transaction


def run(transaction_id: str, **kwargs: Any) -> dict[str, Any]:
    result = sync_transaction.apply_async(kwargs={"transaction_id": transaction_id, **kwargs})
    return dict(result.get(timeout=60))


@pytest.fixture(scope="module")
def seeded(stack: LocalStack) -> LocalStack:
    stack.ipaas.put_customer(customer(7001, "Rui", "Costa", "rui.costa@example.com",
                                      "2015550177"))
    stack.ipaas.put_transaction(order(9001, 7001, lines=2))
    return stack


def test_new_order_of_a_new_customer_syncs_the_customer_first(seeded: LocalStack) -> None:
    result = run("9001")
    assert result["outcome"] == "synced", result
    assert result["events"] == ["Placed Order", "Ordered Product", "Ordered Product"]
    profile_id = LinkStore(seeded.redis()).get("7001")
    assert profile_id and result["profile_id"] == profile_id
    assert seeded.ipaas.external_id("7001") == profile_id
    profile = seeded.klaviyo.profile(profile_id)
    assert profile and profile["attributes"]["email"] == "rui.costa@example.com"
    placed = seeded.klaviyo.events(metric="Placed Order", profile_id=profile_id)
    assert len(placed) == 1
    assert placed[0]["unique_id"] == "9001" and placed[0]["value"] == 42.5
    assert placed[0]["value_currency"] == "USD" and placed[0]["backfill"] is False
    assert placed[0]["time"] == "2026-11-30T15:04:05+00:00"
    assert placed[0]["properties"]["OrderId"] == "SO-9001"
    products = seeded.klaviyo.events(metric="Ordered Product", profile_id=profile_id)
    assert [p["unique_id"] for p in products] == ["9001:1", "9001:2"]
    assert products[1]["properties"]["Order Qty"] == 2
    # The customer pipeline ran before the events: profile-import came first.
    operations = [r.path for r in seeded.klaviyo.server.requests if r.method == "POST"]
    assert operations.index("/api/profile-import") < operations.index("/api/events")
    history = bootstrap.container().history.recent(history_subject("9001"))
    assert history[0]["step"] == "transaction" and history[0]["outcome"] == "synced"


def test_repeated_delivery_and_update_send_no_second_placed_order(
    seeded: LocalStack
) -> None:
    seeded.ipaas.put_transaction(order(9002, 7001, lines=1))
    assert run("9002")["outcome"] == "synced"
    calls = seeded.klaviyo.call_counts["create_event"]
    assert run("9002")["outcome"] == "skipped"
    updated = order(9002, 7001, lines=1, status="Shipped")
    updated["updated_datetime"] = "2026-12-01T10:00:00+00:00"
    seeded.ipaas.put_transaction(updated)
    assert run("9002")["outcome"] == "skipped"
    assert seeded.klaviyo.call_counts["create_event"] == calls
    placed = [e for e in seeded.klaviyo.events(metric="Placed Order")
              if e["unique_id"] == "9002"]
    assert len(placed) == 1


def test_a_lost_sent_marker_still_records_one_placed_order(seeded: LocalStack) -> None:
    seeded.ipaas.put_transaction(order(9003, 7001, lines=1))
    assert run("9003")["outcome"] == "synced"
    seeded.redis().srem(bootstrap.container().sent_orders.key, "placed:9003")
    assert run("9003")["outcome"] == "synced"  # sent again: Klaviyo keeps the first only
    placed = [e for e in seeded.klaviyo.events(metric="Placed Order")
              if e["unique_id"] == "9003"]
    assert len(placed) == 1 and seeded.klaviyo.duplicate_events >= 2


def test_duplicate_skus_are_dead_lettered_with_the_transaction(seeded: LocalStack) -> None:
    duplicated = order(9004, 7001, lines=2)
    duplicated["lines"][1]["sku"] = duplicated["lines"][0]["sku"]
    seeded.ipaas.put_transaction(duplicated)
    result = run("9004")
    assert (result["outcome"], result["reason"]) == ("rejected", reasons.DUPLICATE_SKU)
    entry = DeadLetterStore(seeded.redis()).get("transaction:9004")
    assert entry is not None and entry["reason"] == reasons.DUPLICATE_SKU
    assert entry["transaction_id"] == "9004" and entry["customer_id"] == "7001"
    assert {e["field"] for e in entry["errors"]} == {"lines[0].sku", "lines[1].sku"}
    assert "SKU-001" not in str(entry)
    assert not [e for e in seeded.klaviyo.events() if e["unique_id"].startswith("9004")]


def test_unknown_transaction_is_dead_lettered(seeded: LocalStack) -> None:
    result = run("404404")
    assert (result["outcome"], result["reason"]) == ("rejected",
                                                     reasons.TRANSACTION_NOT_FOUND)
    entry = DeadLetterStore(seeded.redis()).get("transaction:404404")
    assert entry is not None and entry["customer_id"] is None


def test_guest_order_goes_to_the_profile_of_its_email(seeded: LocalStack) -> None:
    seeded.ipaas.put_transaction(order(9005, None, lines=1, email="guest@example.com"))
    result = run("9005")
    assert result["outcome"] == "synced" and result["profile_id"] is None
    holders = seeded.klaviyo.find_profiles(email="guest@example.com")
    assert len(holders) == 1
    assert len(seeded.klaviyo.events(metric="Placed Order", profile_id=holders[0]["id"])) == 1


def test_no_customer_and_no_email_is_missing_customer(seeded: LocalStack) -> None:
    seeded.ipaas.put_transaction(order(9006, None, lines=1))
    assert run("9006")["reason"] == reasons.MISSING_CUSTOMER


def test_generate_events_off_does_nothing(seeded: LocalStack,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    seeded.ipaas.put_transaction(order(9007, 7001, lines=1))
    monkeypatch.setitem(os.environ, "GENERATE_EVENTS", "false")
    bootstrap.reset()
    try:
        before = seeded.ipaas.call_counts["get_transaction"]
        result = sync_transaction.apply(kwargs={"transaction_id": "9007"}).get()
        assert (result["outcome"], result["reason"]) == ("skipped", "generate_events_off")
        assert seeded.ipaas.call_counts["get_transaction"] == before
    finally:
        bootstrap.reset()


def cli(stack: LocalStack, *args: str) -> Any:
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "producers.cli", *args], env=stack.env(),
                          capture_output=True, text=True, timeout=120)


def test_transaction_commands_dry_run_wait_and_status(seeded: LocalStack) -> None:
    seeded.ipaas.put_customer(customer(7101, "Ada", "Stone", "ada.stone@example.com", None))
    seeded.ipaas.put_transaction(order(9101, 7101, lines=1))
    events_before = len(seeded.klaviyo.events())
    dry = cli(seeded, "sync", "--transaction", "9101", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "Placed Order" in dry.stdout and len(seeded.klaviyo.events()) == events_before
    done = cli(seeded, "sync", "--transaction", "9101", "--wait")
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(seeded.klaviyo.events()) == events_before + 2  # Placed Order + one line
    status = cli(seeded, "status", "--transaction", "9101")
    assert status.returncode == 0 and "synced" in status.stdout
    unknown = cli(seeded, "sync", "--transaction", "9999999", "--wait")
    assert unknown.returncode == 1 and "transaction_not_found" in unknown.stdout
