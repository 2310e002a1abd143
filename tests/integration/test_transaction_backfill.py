"""``backfill --transactions`` against the sandboxes: 20,000 orders through bulk event jobs
with ``backfill: true``, resumable, append-only. Requests are checked against the spec by
the ``stack`` fixture."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from sandbox.local_stack import LocalStack
from sandbox.transaction_samples import order
from worker import bootstrap
from worker.core import reasons
from worker.services.transaction_backfill import TransactionBackfill, TransactionBackfillOptions

ORDERS = 20_000
CUSTOMERS = 2_000


@pytest.fixture(scope="module")
def loaded(stack: LocalStack) -> LocalStack:
    linked = stack.klaviyo.add_profile(email="linked@example.com", external_id="1")
    bootstrap.container().links.set("1", linked)
    for n in range(1, ORDERS + 1):
        stack.ipaas.put_transaction(order(n, n % CUSTOMERS + 1, lines=2,
                                          email=f"c{n % CUSTOMERS + 1}@example.com"))
    return stack


def test_backfill_of_20000_orders_sends_bulk_events_with_backfill_true(
    loaded: LocalStack
) -> None:
    backfill = TransactionBackfill(bootstrap.container(), progress_stream=io.StringIO())
    report = backfill.run(TransactionBackfillOptions(page_size=500))
    assert report.counts == {"read": ORDERS, "valid": ORDERS, "events": 3 * ORDERS,
                             "rejected": 0}
    events = loaded.klaviyo.events()
    assert len(events) == 3 * ORDERS and all(e["backfill"] for e in events)
    # Up to 1,000 events per request: 333 whole orders of 3 events each, so 61 calls, far
    # below the target of one call per 100 orders.
    calls = loaded.klaviyo.call_counts
    assert calls["bulk_create_events"] == report.requests == -(-ORDERS // 333)
    assert report.requests <= ORDERS / 100
    assert calls["create_event"] == 0
    assert len(loaded.klaviyo.events(metric="Placed Order")) == ORDERS
    linked = loaded.klaviyo.find_profiles(external_id="1")[0]["id"]
    on_linked = loaded.klaviyo.events(metric="Placed Order", profile_id=linked)
    assert len(on_linked) == ORDERS // CUSTOMERS
    # Unlinked customers were matched by external_id: one profile each, not one per order.
    assert len(loaded.klaviyo.all_profiles()) == CUSTOMERS
    # Append-only: a second run sends nothing.
    again = TransactionBackfill(bootstrap.container(), progress_stream=io.StringIO())
    assert again.run(TransactionBackfillOptions(page_size=500)).requests == 0


def test_file_backfill_resumes_and_dead_letters_bad_orders(
    loaded: LocalStack, tmp_path: Path
) -> None:
    bad = order(990002, 5, lines=2)
    bad["lines"][1]["sku"] = bad["lines"][0]["sku"]
    rows = [order(990001, 5), bad, order(990003, 5)]
    path = tmp_path / "orders.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "not json\n")
    c = bootstrap.container()
    stream = io.StringIO()
    first = TransactionBackfill(c, progress_stream=stream).run(
        TransactionBackfillOptions(path=str(path), limit=1))
    assert first.counts["valid"] == 1
    second = TransactionBackfill(c, progress_stream=stream).run(
        TransactionBackfillOptions(path=str(path)))
    assert second.resumed_after == 1 and second.counts["read"] == 3
    assert second.rejected_ids == ["990002"] and second.counts["rejected"] == 2
    entry = c.dead_letters.get("transaction:990002")
    assert entry is not None and entry["reason"] == reasons.DUPLICATE_SKU
    placed = {e["unique_id"] for e in loaded.klaviyo.events(metric="Placed Order")}
    assert {"990001", "990003"} <= placed and "990002" not in placed
    assert "backfill transactions: read" in stream.getvalue()
