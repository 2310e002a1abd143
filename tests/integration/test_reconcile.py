"""Reconciliation against both sandboxes, real Redis and a real worker: customers changed in
iPaaS.com without a webhook get synced, a second pass enqueues nothing, an interrupted pass
resumes without gaps or duplicates, two passes at once run one, and both the filtered and the
full-scan path (filter refused or ignored) do the same work."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sandbox.local_stack import LocalStack
from sandbox.samples import customer
from tests.support import wait_settled
from worker import bootstrap
from worker.adapters.history import HistoryStore
from worker.adapters.locks import RedisLock
from worker.adapters.stores import CheckpointStore, WatermarkStore
from worker.config import Settings
from worker.core.errors import RetryableError
from worker.core.reconcile import (
    CLOCK_SKEW_MARGIN,
    CUSTOMERS,
    FULL_SCAN,
    TRANSACTIONS,
    PassState,
)
from worker.services.reconcile import (
    PAGE_RETRY,
    ReconcileBusy,
    ReconcileOptions,
    Reconciler,
    ReconcileReport,
    last_pass_name,
)

LONG_AGO = datetime.now(UTC) - timedelta(days=3)


@pytest.fixture
def local(stack: LocalStack) -> Iterator[LocalStack]:
    """The module's stack with no reconcile state and an empty iPaaS.com sandbox."""
    client = stack.redis()
    for pattern in ("ipk:reconcile:*", "ipk:checkpoint:reconcile:*", "ipk:lock:reconcile:*"):
        for key in client.scan_iter(pattern):
            client.delete(key)
    stack.ipaas.reset()
    yield stack
    stack.ipaas.reset()


def container(stack: LocalStack) -> bootstrap.Container:
    return bootstrap.build(Settings.from_env(stack.env()))


def reconciler(stack: LocalStack, **kwargs: Any) -> Reconciler:
    return Reconciler(container(stack), sleep=lambda s: None, **kwargs)


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


def seed(stack: LocalStack, ids: range) -> list[str]:
    for n in ids:
        record = customer(n, f"First{n}", f"Last{n}", f"recon{n}@example.com", None)
        record["updated_datetime"] = iso(LONG_AGO)
        stack.ipaas.put_customer(record)
    return [str(n) for n in ids]


def change(stack: LocalStack, ids: list[str]) -> None:
    for cid in ids:
        record = stack.ipaas.customer(cid)
        assert record is not None
        record["first_name"] = f"Changed{cid}"
        record["updated_datetime"] = iso(datetime.now(UTC))
        stack.ipaas.put_customer(record)


def klaviyo_calls(stack: LocalStack) -> int:
    return sum(stack.klaviyo.call_counts.values())


def finished_steps(stack: LocalStack, cid: str, step: str = "profile") -> int:
    return sum(1 for e in HistoryStore(stack.redis()).recent(cid, limit=50)
               if e["step"] == step and e["outcome"] != "retrying")


def wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.1)


def wait_for_syncs(stack: LocalStack, ids: list[str], count: int) -> None:
    """Until each customer has been synced ``count`` times, the lists step (the last one
    a sync chains) included."""
    wait_for(lambda: all(finished_steps(stack, cid, "lists") >= count for cid in ids))


def first_names(stack: LocalStack, ids: list[str]) -> dict[str, str]:
    names = {}
    for cid in ids:
        found = stack.klaviyo.find_profiles(email=f"recon{cid}@example.com")
        names[cid] = found[0]["attributes"]["first_name"] if found else ""
    return names


def synced_base(stack: LocalStack, ids: range, page_size: int = 10) -> list[str]:
    """Customers synced long ago: a first pass reaching back before them, then its syncs."""
    cids = seed(stack, ids)
    report = reconciler(stack).run(ReconcileOptions(
        page_size=page_size, since=LONG_AGO - timedelta(days=1)))
    assert report.counts["enqueued"] == len(cids)
    wait_for_syncs(stack, cids, 1)
    return cids


def test_filtered_pass_syncs_changed_customers_and_a_second_pass_enqueues_nothing(
        local: LocalStack) -> None:
    cids = synced_base(local, range(1000, 1030))
    changed = cids[3:8]
    change(local, changed)
    calls = klaviyo_calls(local)

    report = reconciler(local).run(ReconcileOptions(page_size=10))

    assert report.mode == "filtered" and report.fell_back is None
    assert report.counts == {"pages": 1, "seen": 5, "enqueued": 5, "unchanged": 0,
                             "already_queued": 0}
    wait_for_syncs(local, changed, 2)
    assert first_names(local, changed) == {cid: f"Changed{cid}" for cid in changed}
    assert klaviyo_calls(local) - calls == len(changed)  # one upsert each, nothing else
    # The list call carried the filter from the previous pass's watermark.
    listed = [r for r in local.ipaas.server.requests if r.path.endswith("/Customers")]
    assert listed[-1].query["action"] == "greaterthan" and "UpdateDateTime" in listed[-1].query

    again = reconciler(local).run(ReconcileOptions(page_size=10))
    assert again.counts["enqueued"] == 0
    assert again.counts["seen"] == again.counts["unchanged"] == 5  # inside the skew margin
    assert again.watermark >= report.watermark
    assert klaviyo_calls(local) - calls == len(changed)
    # The last finished pass is kept for the operator console's overview.
    last = CheckpointStore(local.redis()).load(last_pass_name("customers"))
    assert last is not None and last["counts"] == again.counts
    assert last["watermark"] == again.as_dict()["watermark"] and last["finished_at"]


@pytest.mark.parametrize("refusal", [400, None], ids=["refused", "ignored"])
def test_full_scan_when_the_filter_is_not_accepted(local: LocalStack,
                                                   refusal: int | None) -> None:
    base = 2000 if refusal else 3000
    cids = synced_base(local, range(base, base + 25))
    local.ipaas.update_filter_supported = False
    local.ipaas.unsupported_filter_status = refusal
    untouched = reconciler(local).run(ReconcileOptions(page_size=10))
    # Nothing changed: every customer is listed and none is enqueued (their stored
    # fingerprints match, including those of profiles their first sync created).
    assert untouched.mode == FULL_SCAN
    assert untouched.fell_back == ("refused" if refusal else "ignored")
    assert untouched.counts["seen"] == 25 and untouched.counts["enqueued"] == 0

    changed = cids[10:13]
    change(local, changed)
    calls = klaviyo_calls(local)
    report = reconciler(local).run(ReconcileOptions(page_size=10))
    assert report.counts == {"pages": 3, "seen": 25, "enqueued": 3, "unchanged": 22,
                             "already_queued": 0}
    wait_for_syncs(local, changed, 2)
    assert first_names(local, changed) == {cid: f"Changed{cid}" for cid in changed}
    assert klaviyo_calls(local) - calls == len(changed)


def test_full_scan_setting_skips_unchanged_customers_without_the_filter(
        local: LocalStack) -> None:
    cids = synced_base(local, range(3500, 3512))
    change(local, cids[:2])
    report = reconciler(local).run(ReconcileOptions(page_size=5, full_scan=True))
    assert report.mode == FULL_SCAN and report.fell_back is None
    assert report.counts["seen"] == 12 and report.counts["enqueued"] == 2
    listed = [r for r in local.ipaas.server.requests if r.path.endswith("/Customers")]
    assert all("action" not in r.query for r in listed[-3:])
    wait_for_syncs(local, cids[:2], 2)


def test_interrupted_pass_resumes_without_gaps_or_duplicates(local: LocalStack) -> None:
    cids = seed(local, range(4000, 4025))
    change(local, cids)  # all 25 changed since the watermark below
    started = datetime.now(UTC).replace(microsecond=0)  # stored to the millisecond
    WatermarkStore(local.redis()).set(CUSTOMERS, started - timedelta(hours=1))
    upserts = local.klaviyo.call_counts["create_or_update_profile"]

    def break_after_two_pages(state: PassState) -> None:
        if state.counts["pages"] == 2:
            local.ipaas.fail_next(503, count=PAGE_RETRY.max_attempts, endpoint="list_customers")

    first = reconciler(local, after_page=break_after_two_pages, clock=lambda: started)
    with pytest.raises(RetryableError):
        first.run(ReconcileOptions(page_size=5))
    saved = PassState.from_dict(CheckpointStore(local.redis()).load("reconcile:customers") or {})
    assert saved is not None and saved.next_page == 3 and saved.counts["enqueued"] == 10
    # The watermark has not moved past the customers the failed pass did not reach.
    assert WatermarkStore(local.redis()).get(CUSTOMERS) == started - timedelta(hours=1)

    later = started + timedelta(minutes=30)
    report = reconciler(local, clock=lambda: later).run(ReconcileOptions(page_size=5))
    assert report.resumed_at_page == 3
    assert report.counts == {"pages": 5, "seen": 25, "enqueued": 25, "unchanged": 0,
                             "already_queued": 0}
    # The watermark is the interrupted pass's start: changes made while it was down are
    # still ahead of it.
    assert report.watermark == started - CLOCK_SKEW_MARGIN
    assert CheckpointStore(local.redis()).load("reconcile:customers") is None
    wait_for_syncs(local, cids, 1)
    wait_settled(local.redis())  # a duplicate task would have run by now
    assert all(finished_steps(local, cid) == 1 for cid in cids)
    assert local.klaviyo.call_counts["create_or_update_profile"] - upserts == len(cids)


def test_two_reconciles_at_once_one_runs_the_other_says_so(local: LocalStack) -> None:
    seed(local, range(5000, 5012))
    entered, release = threading.Event(), threading.Event()
    results: list[ReconcileReport] = []

    def hold(state: PassState) -> None:
        entered.set()
        release.wait(10)

    options = ReconcileOptions(page_size=20, since=LONG_AGO - timedelta(days=1))
    runner = threading.Thread(target=lambda: results.append(
        reconciler(local, after_page=hold).run(options)))
    runner.start()
    assert entered.wait(10)
    with pytest.raises(ReconcileBusy):
        reconciler(local).run(ReconcileOptions(page_size=20))
    busy = subprocess.run([sys.executable, "-m", "producers.cli", "reconcile", "--once"],
                          env=local.env(), capture_output=True, text=True, timeout=60)
    assert busy.returncode == 3
    assert "another reconcile of customers is running" in busy.stdout
    release.set()
    runner.join(10)
    assert results and results[0].counts["seen"] == 12
    assert not local.redis().exists("ipk:lock:reconcile:customers")  # released


def test_command_prints_the_summary(local: LocalStack) -> None:
    seed(local, range(6000, 6004))
    done = subprocess.run([sys.executable, "-m", "producers.cli", "reconcile", "--once",
                           "--since", "4d"], env=local.env(), capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "reconcile customers: filtered since" in done.stdout
    assert "seen 4, enqueued 4, unchanged 0, already queued 0 | watermark" in done.stdout
    wait_for_syncs(local, [str(n) for n in range(6000, 6004)], 1)


def test_scheduled_task_runs_on_a_worker(local: LocalStack) -> None:
    from worker.tasks.reconcile import reconcile

    seed(local, range(7000, 7003))
    WatermarkStore(local.redis()).set(CUSTOMERS, LONG_AGO - timedelta(days=1))
    results = reconcile.apply_async().get(timeout=60)
    by_kind = {r["kind"]: r for r in results}
    assert by_kind[CUSTOMERS]["counts"]["enqueued"] == 3
    wait_for_syncs(local, ["7000", "7001", "7002"], 1)
    lock = RedisLock(local.redis(), "reconcile:customers", 30)
    assert lock.acquire()
    try:
        busy = reconcile.apply_async().get(timeout=60)
        assert {"kind": CUSTOMERS, "skipped": "another reconcile is running"} in busy
    finally:
        lock.release()


def test_transactions_whose_order_went_out_are_not_queued_again(local: LocalStack) -> None:
    # The transactions sandbox has no update-time filter: the pass notices and scans.
    ten_minutes_ago = iso(datetime.now(UTC) - timedelta(minutes=10))
    for n in (91, 92, 93):
        local.ipaas.put_transaction({"id": n, "updated_datetime": ten_minutes_ago})
    c = container(local)
    c.sent_orders.mark_placed(["92"])
    report = Reconciler(c, sleep=lambda s: None).run(ReconcileOptions(
        kind=TRANSACTIONS, page_size=10, since=datetime.now(UTC) - timedelta(hours=1)))
    assert report.counts == {"pages": 1, "seen": 3, "enqueued": 2, "unchanged": 1,
                             "already_queued": 0}
    again = Reconciler(c, sleep=lambda s: None).run(
        ReconcileOptions(kind=TRANSACTIONS, page_size=10))
    assert again.fell_back == "ignored"
    assert again.counts["seen"] == 3 and again.counts["enqueued"] == 0
