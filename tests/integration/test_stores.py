"""The Redis stores against a real (throwaway) Redis, flushed before every test."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import redis

from worker.adapters.dead_letters import DeadLetterStore
from worker.adapters.history import HistoryStore
from worker.adapters.links import LinkStore
from worker.core import reasons
from worker.core.errors import FieldError, StepOutcome

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
EMAIL_ERROR = FieldError("Email", reasons.INVALID_EMAIL, "not a valid email address")
PHONE_ERROR = FieldError("PhoneNumber", reasons.INVALID_PHONE, "not a valid phone number")


class FakeClock:
    def __init__(self, start: datetime = T0) -> None:
        self.moment = start

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


def record_profile_failure(store: DeadLetterStore, customer_id: str, reason: str) -> dict:
    return store.record(
        customer_id=customer_id, step="profile", reason=reason, errors=[EMAIL_ERROR]
    )


# --- links -----------------------------------------------------------------------------


def test_links_round_trip(redis_client: redis.Redis) -> None:
    links = LinkStore(redis_client)
    assert links.get("C1") is None
    links.set("C1", "01PROFILE1")
    links.set("C2", "01PROFILE2")
    assert links.get("C1") == "01PROFILE1"
    links.set("C1", "01PROFILE9")
    assert links.get("C1") == "01PROFILE9"
    assert links.count() == 2
    links.delete("C1")
    assert links.get("C1") is None
    assert links.count() == 1


def test_links_get_many_in_order_with_missing(redis_client: redis.Redis) -> None:
    links = LinkStore(redis_client)
    links.set("C1", "P1")
    links.set("C3", "P3")
    assert links.get_many(["C3", "C2", "C1"]) == {"C3": "P3", "C2": None, "C1": "P1"}
    assert links.get_many([]) == {}


def test_links_are_separated_by_prefix(redis_client: redis.Redis) -> None:
    LinkStore(redis_client, prefix="a:").set("C1", "PA")
    assert LinkStore(redis_client, prefix="b:").get("C1") is None
    assert redis_client.hget("a:links", "C1") == "PA"


def test_stores_refuse_a_bytes_client(redis_url: str) -> None:
    raw = redis.Redis.from_url(redis_url)
    for store in (LinkStore, DeadLetterStore, HistoryStore):
        with pytest.raises(ValueError, match="decode_responses"):
            store(raw)
    raw.close()


# --- dead letters: recording -------------------------------------------------------------


def test_record_creates_an_entry_with_exactly_the_contract_fields(
    dlq: DeadLetterStore,
) -> None:
    entry = dlq.record(
        customer_id="C1", step="address", reason=reasons.INVALID_COUNTRY,
        errors=[FieldError("Country", reasons.INVALID_COUNTRY, "unknown country")],
        last_error="ValidationFailed: Country=invalid_country",
    )
    assert entry == {
        "id": "address:C1",
        "customer_id": "C1",
        "step": "address",
        "reason": "invalid_country",
        "errors": [
            {"field": "Country", "message": "unknown country", "reason": "invalid_country"}
        ],
        "attempts": 1,
        "first_failed_at": "2026-03-01T12:00:00.000Z",
        "last_failed_at": "2026-03-01T12:00:00.000Z",
        "last_error": "ValidationFailed: Country=invalid_country",
    }
    assert dlq.get("address:C1") == entry
    assert dlq.get("address:C2") is None
    assert dlq.count() == 1


def test_re_record_counts_attempts_and_keeps_the_first_time(
    dlq: DeadLetterStore, clock: FakeClock
) -> None:
    record_profile_failure(dlq, "C1", reasons.INVALID_EMAIL)
    clock.advance(minutes=5)
    entry = dlq.record(
        customer_id="C1", step="profile", reason=reasons.RETRIES_EXHAUSTED,
        errors=[PHONE_ERROR], last_error="klaviyo 503",
    )
    assert entry["attempts"] == 2
    assert entry["first_failed_at"] == "2026-03-01T12:00:00.000Z"
    assert entry["last_failed_at"] == "2026-03-01T12:05:00.000Z"
    assert entry["reason"] == reasons.RETRIES_EXHAUSTED
    assert entry["errors"] == [PHONE_ERROR.as_dict()]
    assert entry["last_error"] == "klaviyo 503"
    assert dlq.get("profile:C1") == entry
    assert dlq.count() == 1


def test_each_step_of_a_customer_is_its_own_entry(dlq: DeadLetterStore) -> None:
    for step in ("profile", "address", "lists"):
        dlq.record(customer_id="C1", step=step, reason=reasons.UNKNOWN_LIST, errors=[])
    assert dlq.count() == 3
    assert {entry["id"] for entry in dlq.for_customer("C1")} == {
        "profile:C1", "address:C1", "lists:C1"
    }


def test_transaction_entries_are_named_for_the_transaction(dlq: DeadLetterStore) -> None:
    first = dlq.record(
        customer_id=None, step="transaction", reason=reasons.MISSING_CUSTOMER,
        errors=[], transaction_id="T1",
    )
    assert first["id"] == "transaction:T1"
    assert first["transaction_id"] == "T1"
    assert first["customer_id"] is None
    dlq.record(
        customer_id="C1", step="transaction", reason=reasons.DUPLICATE_SKU,
        errors=[], transaction_id="T2",
    )
    later = dlq.record(
        customer_id="C1", step="transaction", reason=reasons.DUPLICATE_SKU,
        errors=[], transaction_id="T1",
    )
    assert later["customer_id"] == "C1" and later["attempts"] == 2
    again = dlq.record(
        customer_id=None, step="transaction", reason=reasons.DUPLICATE_SKU,
        errors=[], transaction_id="T1",
    )
    assert again["customer_id"] == "C1"  # a known customer is not forgotten
    assert [entry["id"] for entry in dlq.for_customer("C1")] == [
        "transaction:T1", "transaction:T2"
    ]


def test_record_needs_a_subject(dlq: DeadLetterStore) -> None:
    with pytest.raises(ValueError):
        dlq.record(customer_id=None, step="profile", reason=reasons.MISSING_CUSTOMER_ID, errors=[])
    with pytest.raises(ValueError):
        dlq.record(customer_id="C1", step="transaction", reason=reasons.MISSING_CUSTOMER, errors=[])


def test_last_error_is_bounded(dlq: DeadLetterStore) -> None:
    entry = dlq.record(
        customer_id="C1", step="profile", reason=reasons.KLAVIYO_REJECTED, errors=[],
        last_error="x" * 5000,
    )
    assert len(entry["last_error"]) == 500


def test_concurrent_re_records_lose_no_attempt(
    redis_url: str, redis_client: redis.Redis, clock: FakeClock
) -> None:
    per_thread = 150
    barrier = threading.Barrier(2)
    failures: list[BaseException] = []

    def worker() -> None:
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        store = DeadLetterStore(client, now=clock)
        try:
            barrier.wait()
            for _ in range(per_thread):
                record_profile_failure(store, "C1", reasons.RETRIES_EXHAUSTED)
        except BaseException as exc:
            failures.append(exc)
        finally:
            client.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    entry = DeadLetterStore(redis_client).get("profile:C1")
    assert entry is not None and entry["attempts"] == 2 * per_thread


# --- dead letters: reading and removing --------------------------------------------------


def test_list_is_newest_first_and_filters(dlq: DeadLetterStore, clock: FakeClock) -> None:
    record_profile_failure(dlq, "C1", reasons.INVALID_EMAIL)
    clock.advance(minutes=1)
    record_profile_failure(dlq, "C2", reasons.INVALID_PHONE)
    clock.advance(minutes=1)
    record_profile_failure(dlq, "C3", reasons.INVALID_EMAIL)
    clock.advance(minutes=1)
    record_profile_failure(dlq, "C1", reasons.INVALID_EMAIL)  # C1 is now the newest

    assert [e["id"] for e in dlq.list()] == ["profile:C1", "profile:C3", "profile:C2"]
    assert [e["id"] for e in dlq.list(reason=reasons.INVALID_EMAIL)] == [
        "profile:C1", "profile:C3"
    ]
    assert [e["id"] for e in dlq.list(since="2026-03-01T12:01:00Z")] == [
        "profile:C1", "profile:C3", "profile:C2"
    ]
    assert [e["id"] for e in dlq.list(since="2026-03-01T12:01:00.001+00:00")] == [
        "profile:C1", "profile:C3"
    ]
    assert [e["id"] for e in dlq.list(since="2026-03-01T14:02:30+02:00")] == ["profile:C1"]
    assert [e["id"] for e in dlq.list(limit=2)] == ["profile:C1", "profile:C3"]
    assert [e["id"] for e in dlq.list(reason=reasons.INVALID_EMAIL, limit=1)] == ["profile:C1"]
    assert dlq.list(reason=reasons.UNKNOWN_LIST) == []


def test_list_pages_through_many_entries(dlq: DeadLetterStore, clock: FakeClock) -> None:
    for number in range(1200):
        clock.advance(seconds=1)
        reason = reasons.INVALID_PHONE if number % 3 == 0 else reasons.INVALID_EMAIL
        record_profile_failure(dlq, f"C{number}", reason)
    everything = dlq.list()
    assert len(everything) == 1200
    assert everything[0]["id"] == "profile:C1199" and everything[-1]["id"] == "profile:C0"
    assert len(dlq.list(reason=reasons.INVALID_PHONE)) == 400


def test_remove(dlq: DeadLetterStore, redis_client: redis.Redis) -> None:
    record_profile_failure(dlq, "C1", reasons.INVALID_EMAIL)
    record_profile_failure(dlq, "C2", reasons.INVALID_EMAIL)
    assert dlq.remove("profile:C1") is True
    assert dlq.remove("profile:C1") is False
    assert dlq.get("profile:C1") is None
    assert dlq.for_customer("C1") == []
    assert [e["id"] for e in dlq.list()] == ["profile:C2"]
    assert dlq.count() == 1
    assert redis_client.exists(dlq.customer_key("C1")) == 0


def test_for_customer_only_lists_that_customer(
    dlq: DeadLetterStore, clock: FakeClock
) -> None:
    record_profile_failure(dlq, "C1", reasons.INVALID_EMAIL)
    clock.advance(seconds=10)
    dlq.record(customer_id="C1", step="lists", reason=reasons.UNKNOWN_LIST, errors=[])
    record_profile_failure(dlq, "C2", reasons.INVALID_EMAIL)
    assert [e["id"] for e in dlq.for_customer("C1")] == ["lists:C1", "profile:C1"]
    assert [e["id"] for e in dlq.for_customer("C2")] == ["profile:C2"]
    assert dlq.for_customer("C9") == []


# --- dead letters: staying bounded -------------------------------------------------------


def test_trim_drops_entries_past_retention(
    redis_client: redis.Redis, clock: FakeClock
) -> None:
    store = DeadLetterStore(redis_client, retention_seconds=3600, now=clock)
    record_profile_failure(store, "C1", reasons.INVALID_EMAIL)
    clock.advance(minutes=30)
    record_profile_failure(store, "C2", reasons.INVALID_EMAIL)
    clock.advance(minutes=30)
    assert store.trim() == 0  # exactly at the limit is still kept
    clock.advance(seconds=1)
    assert store.trim() == 1
    assert store.get("profile:C1") is None
    assert store.for_customer("C1") == []
    assert [e["id"] for e in store.list()] == ["profile:C2"]
    assert store.trim() == 0


def test_record_trims_expired_entries_by_itself(
    redis_client: redis.Redis, clock: FakeClock
) -> None:
    store = DeadLetterStore(redis_client, retention_seconds=3600, now=clock)
    record_profile_failure(store, "C1", reasons.INVALID_EMAIL)
    clock.advance(hours=2)
    record_profile_failure(store, "C2", reasons.INVALID_EMAIL)
    assert [e["id"] for e in store.list()] == ["profile:C2"]
    assert store.count() == 1


def test_entries_expire_in_redis_after_retention(
    redis_client: redis.Redis, dlq: DeadLetterStore
) -> None:
    record_profile_failure(dlq, "C1", reasons.INVALID_EMAIL)
    assert 0 < redis_client.ttl(dlq.entry_key("profile:C1")) <= 30 * 86400
    assert 0 < redis_client.ttl(dlq.customer_key("C1")) <= 30 * 86400


def test_trim_drops_the_oldest_beyond_max_entries(
    redis_client: redis.Redis, clock: FakeClock
) -> None:
    roomy = DeadLetterStore(redis_client, now=clock)
    for number in range(6):
        clock.advance(seconds=1)
        record_profile_failure(roomy, f"C{number}", reasons.INVALID_EMAIL)
    clock.advance(seconds=1)
    record_profile_failure(roomy, "C0", reasons.INVALID_EMAIL)  # C0 is fresh again

    tight = DeadLetterStore(redis_client, max_entries=3, now=clock)
    assert tight.trim() == 3
    assert [e["id"] for e in tight.list()] == ["profile:C0", "profile:C5", "profile:C4"]
    assert tight.count() == 3
    assert tight.for_customer("C1") == []
    assert tight.trim() == 0


def test_record_keeps_the_store_within_max_entries(
    redis_client: redis.Redis, clock: FakeClock
) -> None:
    store = DeadLetterStore(redis_client, max_entries=5, now=clock)
    for number in range(12):
        clock.advance(seconds=1)
        record_profile_failure(store, f"C{number}", reasons.INVALID_EMAIL)
        assert store.count() <= 5
    assert [e["id"] for e in store.list()] == [f"profile:C{n}" for n in range(11, 6, -1)]


# --- history -----------------------------------------------------------------------------


def test_history_is_newest_first_and_bounded(
    redis_client: redis.Redis, clock: FakeClock
) -> None:
    history = HistoryStore(redis_client, keep=3, now=clock)
    for number in range(5):
        clock.advance(seconds=1)
        history.record(
            "C1", StepOutcome(step="profile", outcome="updated", profile_id=f"P{number}"),
            tracking_guid=f"G{number}", duration_ms=12.345,
        )
    recent = history.recent("C1")
    assert [entry["profile_id"] for entry in recent] == ["P4", "P3", "P2"]
    assert recent[0] == {
        "at": "2026-03-01T12:00:05.000Z",
        "step": "profile",
        "outcome": "updated",
        "reason": None,
        "profile_id": "P4",
        "tracking_guid": "G4",
        "duration_ms": 12.3,
    }
    assert redis_client.llen(history.key("C1")) == 3
    assert [entry["profile_id"] for entry in history.recent("C1", limit=2)] == ["P4", "P3"]
    assert history.recent("C2") == []


def test_history_records_rejections_with_their_reason(redis_client: redis.Redis) -> None:
    history = HistoryStore(redis_client)
    history.record(
        "C1",
        StepOutcome(
            step="address", outcome="rejected", reason=reasons.INVALID_REGION,
            errors=[FieldError("Region", reasons.INVALID_REGION, "unknown region")],
        ),
    )
    (entry,) = history.recent("C1")
    assert entry["outcome"] == "rejected" and entry["reason"] == "invalid_region"
    assert entry["tracking_guid"] is None and entry["duration_ms"] is None
    assert datetime.fromisoformat(entry["at"]).tzinfo is not None


def test_history_expires(redis_client: redis.Redis) -> None:
    history = HistoryStore(redis_client, ttl_seconds=600)
    history.record("C1", StepOutcome(step="profile", outcome="created", profile_id="P1"))
    assert 0 < redis_client.ttl(history.key("C1")) <= 600


def test_unconfirmed_links_read_back_as_unconfirmed_until_set_again(
    redis_client: redis.Redis,
) -> None:
    links = LinkStore(redis_client)
    links.set_many({"1": "P1", "2": "P2"}, confirmed=False)
    assert links.lookup("1") == ("P1", False)
    assert links.get("2") == "P2"
    assert links.get_many(["1", "2", "3"]) == {"1": "P1", "2": "P2", "3": None}
    links.set("1", "P1")
    assert links.lookup("1") == ("P1", True)
    assert links.lookup("9") == (None, False)
