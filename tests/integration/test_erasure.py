"""Deletions, with both sandboxes, real Redis, the real receiver and a real worker: a
customer/deleted webhook tombstones the customer and, with KLAVIYO_DELETE_PROFILES=true,
requests exactly one deletion job; a following ``backfill --all`` and
``reconcile --once --full-scan`` create nothing for that customer; ``sync ID`` dead-letters
it as customer_deleted; ``forget`` refuses without a way to confirm."""

from __future__ import annotations

import contextlib
import io
import time
from pathlib import Path

from producers.cli import main
from producers.consent_command import forget_command
from producers.manual_sync import enqueue_customer, wait_for_steps
from producers.reconcile_command import reconcile_command
from sandbox.local_stack import LocalStack
from sandbox.samples import customer
from sandbox.transaction_samples import order
from tests.contract.openapi_contract import violations
from tests.integration.conftest import StackFactory
from worker.adapters.dead_letters import DeadLetterStore
from worker.adapters.history import HistoryStore
from worker.adapters.links import LinkStore
from worker.adapters.tombstones import Tombstones
from worker.tasks.dispatch import send_step
from worker.tasks.transactions import sync_transaction


class Terminal(io.StringIO):
    """Typed answers on what looks like a terminal."""

    def isatty(self) -> bool:
        return True


def wait_for(condition: object, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def history_steps(stack: LocalStack, customer_id: str) -> list[tuple[str, str]]:
    return [(e["step"], e["outcome"]) for e in HistoryStore(stack.redis()).recent(customer_id, 100)]


def test_deleted_customer_is_erased_and_never_comes_back(make_stack: StackFactory,
                                                          tmp_path: Path) -> None:
    # Not the default: this deployment asks Klaviyo to delete erased customers' profiles.
    stack = make_stack(KLAVIYO_DELETE_PROFILES="true")
    stack.klaviyo.server.record_requests = True  # for the contract check below
    gone, kept = "73001", "73002"
    for n in (73001, 73002):
        stack.ipaas.put_customer(customer(n, f"F{n}", f"L{n}", f"erase{n}@example.com", None))
    stack.start_worker(concurrency=2, log_path=str(tmp_path / "worker.log"))
    for cid in (gone, kept):
        enqueue_customer(cid)
    outcomes = stack.wait_for_outcomes([gone, kept], timeout=120)
    profile_id = outcomes[gone]["profile"]["profile_id"]
    assert stack.klaviyo.profile(profile_id) is not None

    stack.start_receiver()
    status, body = stack.post("POST", "/webhooks/ipaas", {
        "id": "env-del", "notifications": [{"scope": "customer/deleted", "id": gone}]})
    assert status == 202, body
    assert body["accepted"] == 1
    assert Tombstones(stack.redis()).is_deleted(gone)  # at once, before the worker runs
    wait_for(lambda: ("erase", "deleted") in history_steps(stack, gone), "the erase step")

    assert stack.klaviyo.deletion_jobs == [{"field": "id", "value": profile_id}]
    assert stack.klaviyo.profile(profile_id) is None
    assert LinkStore(stack.redis()).get(gone) is None
    tombstone = Tombstones(stack.redis()).get(gone)
    assert tombstone is not None and tombstone.profile_id == profile_id
    assert tombstone.source == "webhook"

    # `status ID` shows the tombstone.
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["status", gone]) == 0
    assert "tombstone: deleted (webhook)" in out.getvalue()

    # The customer is still listed by iPaaS.com (an erasure request, say): neither a
    # backfill nor a full reconcile brings it back.
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(["backfill", "--all"]) == 0
    assert stack.klaviyo.find_profiles(email=f"erase{gone}@example.com") == []
    assert LinkStore(stack.redis()).get(gone) is None
    before = history_steps(stack, gone)
    reconciled = io.StringIO()
    assert reconcile_command(since=None, once=True, transactions=False, full_scan=True,
                             out=reconciled, err=io.StringIO()) == 0
    # The other customer is unchanged; the erased one (its fingerprint forgotten) would be
    # enqueued but for its tombstone.
    assert "seen 2, enqueued 0," in reconciled.getvalue(), reconciled.getvalue()
    assert stack.klaviyo.find_profiles(email=f"erase{gone}@example.com") == []
    assert history_steps(stack, gone) == before

    # An explicit sync is dead-lettered, so the operator sees why nothing happened.
    outcomes_sync = wait_for_steps(enqueue_customer(gone), timeout=60)
    assert [(o["outcome"], o["reason"]) for o in outcomes_sync] == [
        ("rejected", "customer_deleted")]
    entries = DeadLetterStore(stack.redis(), retention_seconds=86400).for_customer(gone)
    assert [e["reason"] for e in entries] == ["customer_deleted"]
    assert stack.klaviyo.find_profiles(email=f"erase{gone}@example.com") == []
    # An order of the deleted customer sends no event (it would bring the person back).
    stack.ipaas.put_transaction(order(93001, gone, email=f"erase{gone}@example.com"))
    placed = send_step(sync_transaction, {"transaction_id": "93001"}).get(timeout=60)
    assert (placed["outcome"], placed["reason"]) == ("skipped", "customer_deleted")
    assert stack.klaviyo.events() == []
    assert len(stack.klaviyo.deletion_jobs) == 1  # exactly one deletion job in all
    assert stack.klaviyo.profile(outcomes[kept]["profile"]["profile_id"]) is not None
    assert violations(stack.klaviyo.server.requests) == []


def test_forget_confirms_or_refuses(make_stack: StackFactory, tmp_path: Path) -> None:
    stack = make_stack()  # defaults: KLAVIYO_DELETE_PROFILES off, the profile stays
    stack.ipaas.put_customer(customer(74001, "F", "L", "forget74001@example.com", None))
    stack.start_worker(concurrency=1, log_path=str(tmp_path / "worker.log"))
    enqueue_customer("74001")
    profile_id = stack.wait_for_outcomes(["74001"])["74001"]["profile"]["profile_id"]

    err = io.StringIO()
    assert forget_command(["74001"], yes=False, stdin=io.StringIO(""), out=io.StringIO(),
                          err=err) == 2
    assert "refusing without --yes" in err.getvalue()
    assert not Tombstones(stack.redis()).is_deleted("74001")
    asked = io.StringIO()
    assert forget_command(["74001"], yes=False, stdin=Terminal("no\n"), out=asked) == 1
    assert "Type 'yes'" in asked.getvalue() and "nothing done" in asked.getvalue()
    assert not Tombstones(stack.redis()).is_deleted("74001")

    out = io.StringIO()
    assert forget_command(["74001"], yes=True, out=out) == 0
    assert "74001\ttombstoned" in out.getvalue()
    wait_for(lambda: ("erase", "unlinked") in history_steps(stack, "74001"), "the erase step")
    assert LinkStore(stack.redis()).get("74001") is None
    assert stack.klaviyo.profile(profile_id) is not None  # left in Klaviyo, unlinked
    assert stack.klaviyo.deletion_jobs == []
    tombstone = Tombstones(stack.redis()).get("74001")
    assert tombstone is not None and tombstone.source == "forget"
