"""Replay and purge over a tiny in-memory store: selection, the --since forms, the order of
enqueue and removal, and which task each kind of entry goes back through."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from worker.services.replay import (
    ReplayReport,
    SelectionError,
    parse_since,
    purge,
    replay,
    select,
    task_call,
)

NOW = datetime(2026, 3, 10, 12, 0, 0, tzinfo=UTC)


def entry(entry_id: str, reason: str = "invalid_phone", at: str = "2026-03-10T11:00:00.000Z",
          **extra: Any) -> dict[str, Any]:
    step, _, subject = entry_id.partition(":")
    return {"id": entry_id, "customer_id": subject, "step": step, "reason": reason,
            "errors": [], "attempts": 1, "first_failed_at": at, "last_failed_at": at,
            "last_error": None, **extra}


@dataclass
class FakeStore:
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    removals: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)

    def add(self, *entries: dict[str, Any]) -> FakeStore:
        for e in entries:
            self.entries[e["id"]] = e
        return self

    def get(self, entry_id: str) -> dict[str, Any] | None:
        return self.entries.get(entry_id)

    def list(self, *, reason: str | None = None, since: str | None = None,
             limit: int | None = None, step: str | None = None) -> list[dict[str, Any]]:
        found = [e for e in self.entries.values()
                 if (reason is None or e["reason"] == reason)
                 and (step is None or e["step"] == step)
                 and (since is None or e["last_failed_at"] >= since)]
        return sorted(found, key=lambda e: e["last_failed_at"], reverse=True)

    def remove(self, entry_id: str, *, if_last_failed_at: str | None = None) -> bool:
        self.events.append(f"remove {entry_id}")
        stored = self.entries.get(entry_id)
        if stored is None:
            return False
        if if_last_failed_at is not None and stored["last_failed_at"] != if_last_failed_at:
            return False
        del self.entries[entry_id]
        return True


def store_of_three() -> FakeStore:
    return FakeStore().add(
        entry("profile:1", "invalid_phone", "2026-03-10T11:30:00.000Z"),
        entry("profile:2", "invalid_email", "2026-03-09T12:00:00.000Z"),
        entry("address:3", "invalid_country", "2026-03-01T00:00:00.000Z"),
    )


# --- --since ------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("30m", "2026-03-10T11:30:00.000Z"),
    ("2h", "2026-03-10T10:00:00.000Z"),
    ("7d", "2026-03-03T12:00:00.000Z"),
    ("1w", "2026-03-03T12:00:00.000Z"),
    ("90s", "2026-03-10T11:58:30.000Z"),
    (" 2H ", "2026-03-10T10:00:00.000Z"),
    ("1.5h", "2026-03-10T10:30:00.000Z"),
    ("2026-03-01", "2026-03-01T00:00:00.000Z"),
    ("2026-03-01T08:15:00", "2026-03-01T08:15:00.000Z"),  # no offset: UTC
    ("2026-03-01T08:15:00Z", "2026-03-01T08:15:00.000Z"),
    ("2026-03-01T10:15:00+02:00", "2026-03-01T08:15:00.000Z"),
])
def test_since_accepts_iso_and_relative_forms(text: str, expected: str) -> None:
    assert parse_since(text, NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "2h30m", "-2h", "", "2026-13-01", "5y"])
def test_since_rejects_anything_else(text: str) -> None:
    with pytest.raises(SelectionError, match="--since"):
        parse_since(text, NOW)


# --- selection ----------------------------------------------------------------------------


def test_ids_select_exactly_those_and_report_unknown_ones() -> None:
    entries, missing = select(store_of_three(), ids=["address:3", "profile:9", "address:3",
                                                     "profile:1"])
    assert [e["id"] for e in entries] == ["address:3", "profile:1"]
    assert missing == ["profile:9"]


def test_reason_since_and_all_select_from_the_store() -> None:
    store = store_of_three()
    by_reason, missing = select(store, reason="invalid_email")
    assert [e["id"] for e in by_reason] == ["profile:2"] and missing == []
    recent, _ = select(store, since="2d", now=NOW)
    assert [e["id"] for e in recent] == ["profile:1", "profile:2"]
    narrowed, _ = select(store, reason="invalid_phone", since="2d", now=NOW)
    assert [e["id"] for e in narrowed] == ["profile:1"]
    by_step, _ = select(store, step="address")
    assert [e["id"] for e in by_step] == ["address:3"]
    assert select(store, step="profile", reason="invalid_email")[0] == [
        store.entries["profile:2"]]
    everything, _ = select(store, all=True)
    assert [e["id"] for e in everything] == ["profile:1", "profile:2", "address:3"]


@pytest.mark.parametrize("selectors", [
    {},
    {"ids": []},
    {"ids": ["profile:1"], "all": True},
    {"ids": ["profile:1"], "reason": "invalid_phone"},
    {"ids": ["profile:1"], "since": "2h"},
    {"all": True, "reason": "invalid_phone"},
    {"all": True, "since": "2h"},
    {"reason": "invalid_phoen"},
    {"step": "adress"},
    {"all": True, "step": "profile"},
    {"ids": ["profile:1"], "step": "profile"},
])
def test_missing_or_contradictory_selectors_are_usage_errors(selectors: dict) -> None:
    store = store_of_three()
    with pytest.raises(SelectionError):
        select(store, **selectors)
    assert len(store.entries) == 3


# --- replay and purge ---------------------------------------------------------------------


def test_replay_removes_each_entry_only_after_its_enqueue_returned() -> None:
    store = store_of_three()

    def enqueue(e: dict[str, Any]) -> str:
        store.events.append(f"enqueue {e['id']}")
        assert e["id"] in store.entries  # still there while being enqueued
        return f"task-{e['id']}"

    entries, _ = select(store, all=True)
    report = replay(store, entries, enqueue=enqueue)
    assert store.events == [
        "enqueue profile:1", "remove profile:1", "enqueue profile:2", "remove profile:2",
        "enqueue address:3", "remove address:3",
    ]
    assert store.entries == {}
    assert report.replayed == [("profile:1", "task-profile:1"), ("profile:2", "task-profile:2"),
                               ("address:3", "task-address:3")]
    assert report.failed == [] and report.kept == []
    assert report.summary == "3 replayed, 0 not replayed"


def test_an_entry_whose_enqueue_fails_stays_in_the_store() -> None:
    store = store_of_three()

    def enqueue(e: dict[str, Any]) -> str:
        if e["id"] == "profile:2":
            raise ConnectionError("broker at redis://:hunter2@host down")
        return "t"

    report = replay(store, store.list(), enqueue=enqueue)
    assert set(store.entries) == {"profile:2"}
    assert report.failed == [("profile:2", "enqueue failed (ConnectionError)")]
    assert "hunter2" not in "\n".join(report.lines())
    assert "not replayed profile:2: enqueue failed (ConnectionError)" in report.lines()


def test_a_failure_recorded_after_selection_is_kept() -> None:
    store = store_of_three()
    selected, _ = select(store, ids=["profile:1"])

    def enqueue(e: dict[str, Any]) -> str:
        # The worker ran the replay and it failed again before the entry was removed.
        store.entries["profile:1"] = entry("profile:1", at="2026-03-10T12:00:01.000Z")
        return "t1"

    report = replay(store, selected, enqueue=enqueue)
    assert store.entries["profile:1"]["last_failed_at"] == "2026-03-10T12:00:01.000Z"
    assert report.kept == ["profile:1"]
    assert report.lines() == ["replayed profile:1 as task t1 (failed again meanwhile: "
                              "entry kept)"]


def test_an_entry_the_replayed_task_already_cleared_is_not_reported_as_kept() -> None:
    store = store_of_three()

    def enqueue(e: dict[str, Any]) -> str:
        del store.entries[e["id"]]  # the worker succeeded first and cleared it
        return "t"

    report = replay(store, [store.entries["profile:1"]], enqueue=enqueue)
    assert report.kept == [] and [i for i, _ in report.replayed] == ["profile:1"]


def test_purge_deletes_the_selection_but_not_a_newer_failure() -> None:
    store = store_of_three()
    selected, _ = select(store, all=True)
    store.entries["profile:2"] = entry("profile:2", at="2026-03-10T12:30:00.000Z")
    assert purge(store, selected) == 2
    assert set(store.entries) == {"profile:2"}


def test_report_repr_is_its_summary() -> None:
    report = ReplayReport(replayed=[("profile:1", "t")], failed=[("transaction:T", "x")])
    assert repr(report) == "<ReplayReport: 1 replayed, 1 not replayed>"


# --- which task ---------------------------------------------------------------------------


def test_each_entry_goes_back_through_its_own_task() -> None:
    context = {"profile_id": "01P", "collection": "update"}
    assert task_call(entry("profile:7")) == ("sync_customer", {"customer_id": "7"})
    assert task_call(entry("address:7", context=context)) == (
        "apply_address", {"customer_id": "7", "profile_id": "01P", "collection": "update"})
    assert task_call(entry("lists:7", context=context)) == (
        "apply_subscriptions", {"customer_id": "7", "profile_id": "01P", "collection": "update"})


def test_a_step_without_its_ids_re_runs_the_whole_pipeline() -> None:
    assert task_call(entry("address:7")) == ("sync_customer", {"customer_id": "7"})
    assert task_call(entry("lists:7", context={"profile_id": "01P"})) == (
        "sync_customer", {"customer_id": "7"})


def test_a_transaction_entry_replays_through_the_transaction_task() -> None:
    transaction = entry("transaction:T1", transaction_id="T1")
    name, kwargs = task_call(transaction)
    assert name == "sync_transaction" and kwargs["transaction_id"] == "T1"
