"""Consent back to iPaaS.com, with both sandboxes, real Redis and a real worker: a Klaviyo
unsubscribe (or spam complaint) is written back as SubscribeProfile=false by one
``consent-sync --once``; the next customer/updated sync does not subscribe the person again,
a later explicit true does; an unlinked profile is skipped; a pass that crashes in the
middle of a page resumes without writing anyone twice."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from producers.consent_command import consent_sync_command
from producers.manual_sync import enqueue_customer
from sandbox.local_stack import LocalStack
from sandbox.samples import customer
from worker import bootstrap
from worker.adapters.history import HistoryStore
from worker.adapters.links import LinkStore
from worker.adapters.stores import CheckpointStore
from worker.config import Settings
from worker.core.consent_back import subscribe_field
from worker.services.consent_sync import (
    CURSOR_NAME,
    LOCK_NAME,
    LOCK_TTL_SECONDS,
    ConsentSync,
)

SUBSCRIBE_PATH = "/api/profile-subscription-bulk-create-jobs"


@pytest.fixture
def local(stack: LocalStack) -> Iterator[LocalStack]:
    """The module's stack with no consent-sync cursor: each test starts from --since."""
    CheckpointStore(stack.redis()).clear(CURSOR_NAME)
    stack.ipaas.updates.clear()
    yield stack


def subscribed_customer(n: int, value: str = "true") -> dict:
    return customer(n, f"F{n}", f"L{n}", f"back{n}@example.com", None,
                    custom_fields={"SubscribeProfile": value})


def sync_and_wait(stack: LocalStack, ids: list[str], timeout: float = 120.0) -> None:
    """Sync the customers and wait until each one's run finished: a profile outcome that
    ends the run, or the lists step after it."""
    history = HistoryStore(stack.redis())
    before = {cid: len(history.recent(cid, 200)) for cid in ids}
    for cid in ids:
        enqueue_customer(cid)
    deadline = time.monotonic() + timeout
    pending = set(ids)
    while pending:
        for cid in list(pending):
            fresh = history.recent(cid, 200)[: len(history.recent(cid, 200)) - before[cid]]
            steps = {e["step"]: e["outcome"] for e in fresh if e["outcome"] != "retrying"}
            if steps.get("profile") in ("unchanged", "rejected") or "lists" in steps:
                pending.discard(cid)
        assert time.monotonic() < deadline, f"no outcome for {sorted(pending)}"
        time.sleep(0.25)


def run_once(since: datetime | None = None) -> str:
    """``consent-sync --once [--since TIME]`` in this process."""
    out, err = io.StringIO(), io.StringIO()
    code = consent_sync_command(since=since.isoformat() if since else None, once=True,
                                out=out, err=err)
    assert code == 0, err.getvalue()
    return out.getvalue()


def subscribe_rows_for(stack: LocalStack, profile_id: str) -> int:
    rows = 0
    for request in stack.klaviyo.server.requests:
        if request.method == "POST" and request.path == SUBSCRIBE_PATH:
            data = json.loads(request.body)["data"]["attributes"]["profiles"]["data"]
            rows += sum(1 for row in data if row.get("id") == profile_id
                        or row["attributes"].get("email", "").startswith(f"back{profile_id}"))
    return rows


def test_unsubscribe_is_written_back_and_not_undone(local: LocalStack) -> None:
    since = datetime.now(UTC) - timedelta(seconds=5)
    for n in (71001, 71002):
        local.ipaas.put_customer(subscribed_customer(n))
    sync_and_wait(local, ["71001", "71002"])
    links = LinkStore(local.redis())
    unsubscribed, complained = links.get("71001"), links.get("71002")
    assert unsubscribed and complained
    assert local.klaviyo.email_consent(unsubscribed) == "SUBSCRIBED"

    local.klaviyo.unsubscribe(unsubscribed)  # the person clicks "unsubscribe" in an email
    local.klaviyo.suppress(complained, "SPAM_COMPLAINT")  # the other marks it as spam
    stray = local.klaviyo.add_profile(email="stray@example.com")  # linked to no customer
    local.klaviyo.unsubscribe(stray)

    summary = run_once(since)
    assert "seen 3, written back 2, already false 0, unlinked 1" in summary, summary
    assert "failed 0" in summary
    for cid in ("71001", "71002"):
        stored = local.ipaas.customer(cid)
        assert stored is not None and subscribe_field(stored) is False
        assert stored["email_address"] == f"back{cid}@example.com"  # the rest as read
    assert sorted(local.ipaas.updates) == ["71001", "71002"]
    assert HistoryStore(local.redis()).recent("71001")[0]["step"] == "consent"
    assert HistoryStore(local.redis()).recent("71001")[0]["outcome"] == "written_back"

    # A second pass (from the watermark) finds nothing new: no reads, no writes.
    calls = local.ipaas.call_counts["get_customer"]
    again = run_once()
    assert "seen 0" in again, again
    assert local.ipaas.call_counts["get_customer"] == calls

    # iPaaS.com sends customer/updated for the change: the sync reads false and does not
    # subscribe the person again.
    local.klaviyo.server.requests.clear()
    sync_and_wait(local, ["71001"])
    assert local.klaviyo.email_consent(unsubscribed) == "UNSUBSCRIBED"
    assert subscribe_rows_for(local, unsubscribed) == 0

    # Later the person consents again in the shop: an explicit true is the latest action.
    record = local.ipaas.customer("71001")
    assert record is not None
    record["custom_fields"] = [{"id": "1", "custom_field_name": "SubscribeProfile",
                                "value": "true"}]
    record.pop("updated_datetime", None)
    local.ipaas.put_customer(record)
    sync_and_wait(local, ["71001"])
    deadline = time.monotonic() + 30
    while local.klaviyo.email_consent(unsubscribed) != "SUBSCRIBED":
        assert time.monotonic() < deadline, "the explicit true did not re-subscribe"
        time.sleep(0.25)


CRASHING_PASS = """
import os, sys
from worker import bootstrap
from worker.config import Settings
from worker.services.consent_sync import ConsentSync
from datetime import datetime
seen = []
def crash(profile_id, outcome):
    seen.append(profile_id)
    if len(seen) == int(sys.argv[2]):
        os._exit(17)  # a crash: nothing after this runs, no cursor is saved
ConsentSync(bootstrap.build(Settings.from_env()), after_profile=crash).run(
    datetime.fromisoformat(sys.argv[1]))
"""


def test_a_crash_in_the_middle_of_a_page_resumes_without_double_writes(
        local: LocalStack) -> None:
    since = datetime.now(UTC) - timedelta(seconds=5)
    links = LinkStore(local.redis())
    ids = [str(n) for n in range(71101, 71107)]
    for cid in ids:
        local.ipaas.put_customer(subscribed_customer(int(cid)))
        profile_id = local.klaviyo.add_profile(email=f"back{cid}@example.com")
        links.set(cid, profile_id)  # linked through our store (no external_id on the profile)
        local.klaviyo.unsubscribe(profile_id)

    crashed = subprocess.run([sys.executable, "-c", CRASHING_PASS, since.isoformat(), "3"],
                             env={**os.environ, **local.env()}, timeout=120)
    assert crashed.returncode == 17
    assert len(local.ipaas.updates) == 3  # three written back before the crash
    lock_ttl = local.redis().pttl(f"ipk:lock:{LOCK_NAME}")
    assert 0 < lock_ttl <= LOCK_TTL_SECONDS * 1000  # the dead pass's lock frees itself...
    local.redis().delete(f"ipk:lock:{LOCK_NAME}")  # ...in 10 minutes: not waited out here

    report = ConsentSync(bootstrap.build(Settings.from_env(local.env()))).run()
    assert report.finished
    assert sorted(local.ipaas.updates) == ids  # everyone once, nobody twice
    assert report.counts["written_back"] == 3
    assert report.counts["already_false"] == 3  # the crashed page's first three, re-read


def test_the_scheduled_task_runs_on_the_worker_and_a_slice_resumes(local: LocalStack) -> None:
    links = LinkStore(local.redis())
    ids = [str(n) for n in range(71201, 71205)]
    for cid in ids:
        local.ipaas.put_customer(subscribed_customer(int(cid)))
        profile_id = local.klaviyo.add_profile(email=f"back{cid}@example.com")
        links.set(cid, profile_id)
        local.klaviyo.suppress(profile_id, "HARD_BOUNCE")

    # A slice that runs out of time stops between profiles with its cursor saved.
    c = bootstrap.build(Settings.from_env(local.env()))
    since = datetime.now(UTC) - timedelta(minutes=5)
    handled: list[str] = []
    sliced = ConsentSync(c, after_profile=lambda pid, outcome: handled.append(pid))
    report = sliced.run(since, deadline=time.monotonic() - 1)
    assert not report.finished and report.counts["seen"] == 0 and handled == []
    assert local.ipaas.updates == []

    # Beat's task, on the real worker, goes on from that cursor.
    from worker.tasks.celery_app import app

    result = app.send_task("ipaas_klaviyo.consent_sync")
    outcome = result.get(timeout=120)
    assert outcome["finished"] is True, outcome
    assert outcome["counts"]["written_back"] == 4
    assert sorted(local.ipaas.updates) == ids


def test_a_refused_update_is_failed_and_a_bad_token_stops_the_pass(local: LocalStack) -> None:
    links = LinkStore(local.redis())
    for cid in ("71301", "71302"):
        local.ipaas.put_customer(subscribed_customer(int(cid)))
        profile_id = local.klaviyo.add_profile(email=f"back{cid}@example.com")
        links.set(cid, profile_id)
        local.klaviyo.unsubscribe(profile_id)
    c = bootstrap.build(Settings.from_env(local.env()))
    since = datetime.now(UTC) - timedelta(minutes=5)

    # A wrong token is nobody's fault in particular: the pass stops, the cursor stays.
    local.ipaas.fail_next(401, endpoint="get_customer")
    stopped = ConsentSync(c).run(since)
    assert not stopped.finished and stopped.stopped == "ipaas unauthorized"
    assert stopped.counts["seen"] == 0 and local.ipaas.updates == []

    # iPaaS.com refuses one customer's update: that one is failed (in its history), the
    # other is written back, and the pass goes on.
    local.ipaas.fail_next(400, endpoint="update_customer")
    report = ConsentSync(c).run()
    assert report.finished
    assert (report.counts["failed"], report.counts["written_back"]) == (1, 1)
    failed = next(cid for cid in ("71301", "71302") if cid not in local.ipaas.updates)
    entry = HistoryStore(local.redis()).recent(failed)[0]
    assert (entry["step"], entry["outcome"]) == ("consent", "rejected")
