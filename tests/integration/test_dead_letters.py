"""The dead-letter store's replay support against a real (throwaway) Redis: the ids a step
needs to run again, compare-and-delete, and trimming that says what it dropped."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
import redis

from worker.adapters.dead_letters import DeadLetterStore
from worker.core import reasons
from worker.core.errors import FieldError

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
CONTEXT = {"profile_id": "01PROFILE", "collection": "update"}
COUNTRY_ERROR = FieldError("Country", reasons.INVALID_COUNTRY, "unknown country")
LOGGER = "ipaas_klaviyo.dead_letters"


class FakeClock:
    def __init__(self) -> None:
        self.moment = T0

    def __call__(self) -> datetime:
        return self.moment

    def advance(self, **delta: float) -> None:
        self.moment += timedelta(**delta)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def dlq(redis_client: redis.Redis, clock: FakeClock) -> DeadLetterStore:
    return DeadLetterStore(redis_client, now=clock)


def fail(store: DeadLetterStore, customer_id: str, step: str = "profile",
         reason: str = reasons.INVALID_PHONE, *, errors: list[FieldError] | None = None,
         context: dict[str, str] | None = None) -> dict:
    return store.record(customer_id=customer_id, step=step, reason=reason,
                        errors=errors or [], context=context)


# --- context ------------------------------------------------------------------------------


def test_a_step_entry_keeps_the_ids_its_task_needs(dlq: DeadLetterStore) -> None:
    entry = fail(dlq, "C1", "address", reasons.INVALID_COUNTRY, context=CONTEXT)
    assert entry["context"] == CONTEXT
    assert dlq.get("address:C1") == entry
    assert dlq.list()[0]["context"] == CONTEXT
    assert dlq.for_customer("C1")[0]["context"] == CONTEXT


def test_a_re_record_without_context_keeps_the_known_one_and_a_new_one_replaces_it(
    dlq: DeadLetterStore, clock: FakeClock
) -> None:
    fail(dlq, "C1", "lists", reasons.UNKNOWN_LIST, context=CONTEXT)
    clock.advance(seconds=5)
    again = fail(dlq, "C1", "lists", reasons.RETRIES_EXHAUSTED)
    assert again["context"] == CONTEXT and again["attempts"] == 2
    clock.advance(seconds=5)
    moved = fail(dlq, "C1", "lists", reasons.UNKNOWN_LIST,
                 context={"profile_id": "01OTHER", "collection": "add"})
    assert moved["context"] == {"profile_id": "01OTHER", "collection": "add"}


def test_an_entry_without_context_has_no_context_key(dlq: DeadLetterStore) -> None:
    assert "context" not in fail(dlq, "C1")


# --- compare-and-delete -------------------------------------------------------------------


def test_remove_if_last_failed_at_deletes_the_entry_it_saw(
    dlq: DeadLetterStore, redis_client: redis.Redis
) -> None:
    seen = fail(dlq, "C1", "address", reasons.INVALID_COUNTRY, errors=[COUNTRY_ERROR])
    fail(dlq, "C2")
    assert dlq.remove("address:C1", if_last_failed_at=seen["last_failed_at"]) is True
    assert dlq.get("address:C1") is None
    assert dlq.for_customer("C1") == []
    assert redis_client.exists(dlq.customer_key("C1")) == 0
    assert [e["id"] for e in dlq.list()] == ["profile:C2"]
    assert dlq.remove("address:C1", if_last_failed_at=seen["last_failed_at"]) is False


def test_remove_never_deletes_a_failure_recorded_after_the_caller_looked(
    dlq: DeadLetterStore, clock: FakeClock
) -> None:
    seen = fail(dlq, "C1")
    clock.advance(milliseconds=1)
    newer = fail(dlq, "C1", reason=reasons.RETRIES_EXHAUSTED)
    assert dlq.remove("profile:C1", if_last_failed_at=seen["last_failed_at"]) is False
    assert dlq.get("profile:C1") == newer
    assert [e["id"] for e in dlq.for_customer("C1")] == ["profile:C1"]
    assert dlq.count() == 1
    assert dlq.remove("profile:C1", if_last_failed_at=newer["last_failed_at"]) is True
    assert dlq.count() == 0


def test_remove_without_condition_deletes_whatever_is_there(
    dlq: DeadLetterStore, clock: FakeClock
) -> None:
    fail(dlq, "C1")
    clock.advance(seconds=1)
    fail(dlq, "C1")
    assert dlq.remove("profile:C1") is True
    assert dlq.get("profile:C1") is None and dlq.count() == 0
    assert dlq.remove("profile:C1") is False
    assert dlq.remove("profile:C1", if_last_failed_at="2026-03-01T12:00:00.000Z") is False


def test_a_transaction_entry_is_removed_with_its_customer_index(
    dlq: DeadLetterStore,
) -> None:
    seen = dlq.record(customer_id="C1", step="transaction", reason=reasons.DUPLICATE_SKU,
                      errors=[], transaction_id="T1")
    assert dlq.remove("transaction:T1", if_last_failed_at=seen["last_failed_at"]) is True
    assert dlq.for_customer("C1") == []


# --- trimming says so ---------------------------------------------------------------------


def test_trimming_by_age_logs_and_counts_what_it_dropped(
    redis_client: redis.Redis, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    store = DeadLetterStore(redis_client, retention_seconds=7200, now=clock)
    for number in range(3):
        fail(store, f"C{number}")
    clock.advance(hours=1)
    fail(store, "C9")
    clock.advance(hours=1, seconds=1)
    assert store.dropped_total() == 0
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert store.trim() == 3
    assert store.dropped_total() == 3
    warnings = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert warnings == ["dead-letter store dropped 3 entries older than its retention of "
                        "2 hours"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert store.trim() == 0
    assert caplog.records == [] and store.dropped_total() == 3


def test_trimming_by_count_logs_and_counts_when_record_overflows(
    redis_client: redis.Redis, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    store = DeadLetterStore(redis_client, max_entries=4, now=clock)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for number in range(7):
            clock.advance(seconds=1)
            fail(store, f"C{number}")
    assert store.count() == 4
    assert store.dropped_total() == 3
    assert [e["id"] for e in store.list()][-1] == "profile:C3"  # the oldest went first
    warnings = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert warnings == ["dead-letter store dropped its 1 oldest entries to stay within "
                        "4 entries"] * 3
    assert all("C0" not in message for message in warnings)


def test_dropped_total_is_shared_by_every_store_on_the_prefix(
    redis_client: redis.Redis, clock: FakeClock
) -> None:
    first = DeadLetterStore(redis_client, max_entries=1, now=clock)
    fail(first, "C1")
    clock.advance(seconds=1)
    fail(first, "C2")
    assert DeadLetterStore(redis_client).dropped_total() == 1
    assert DeadLetterStore(redis_client, prefix="other:").dropped_total() == 0


def run_cli(redis_url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "REDIS_URL": redis_url, **env}
    return subprocess.run([sys.executable, "-m", "producers.cli", *args], env=full_env,
                          capture_output=True, text=True, timeout=60)


def test_dlq_list_says_how_many_entries_were_dropped(
    redis_url: str, redis_client: redis.Redis, clock: FakeClock
) -> None:
    store = DeadLetterStore(redis_client, max_entries=2, now=clock)
    for number in range(5):
        clock.advance(seconds=1)
        fail(store, f"C{number}")
    done = run_cli(redis_url, "dlq", "list", DEAD_LETTER_MAX_ENTRIES="2",
                   DEAD_LETTER_RETENTION_DAYS="30")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split("\t")[0] for line in lines[:-1]] == ["profile:C4", "profile:C3"]
    assert lines[-1] == "3 older entries were dropped (limit 2, kept 30 days)"


def test_dlq_list_is_quiet_about_drops_when_there_were_none(
    redis_url: str, dlq: DeadLetterStore
) -> None:
    fail(dlq, "C1")
    done = run_cli(redis_url, "dlq", "list")
    assert done.returncode == 0, done.stderr
    assert "dropped" not in done.stdout
    assert done.stdout.startswith("profile:C1\tprofile\tinvalid_phone")
