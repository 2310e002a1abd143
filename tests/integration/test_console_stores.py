"""What the console reads and keeps in Redis, against a real (throwaway) Redis: dead-letter
pages and their indexes, sign-in sessions and lock-out, limiter use, per-minute counts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import redis

from worker.adapters.admin_auth import AdminSessions, LoginLockout, session_tag
from worker.adapters.dead_letter_pages import DeadLetterPages, Filter
from worker.adapters.dead_letters import DeadLetterStore, iso_utc
from worker.adapters.metrics import Metrics
from worker.adapters.rate_limiter import RedisRateLimiter

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.moment = T0

    def __call__(self) -> datetime:
        return self.moment


def filled(client: redis.Redis, clock: Clock, n: int = 30) -> DeadLetterStore:
    """n entries one minute apart: even ids profile, odd address; the first 10 invalid_email,
    the rest invalid_phone."""
    store = DeadLetterStore(client, now=clock)
    for i in range(n):
        clock.moment = T0 + timedelta(minutes=i)
        store.record(customer_id=str(i), step="profile" if i % 2 == 0 else "address",
                     reason="invalid_email" if i < 10 else "invalid_phone", errors=[])
    return store


def test_pages_count_and_page_each_filter_newest_first(redis_client: redis.Redis) -> None:
    store = filled(redis_client, Clock())
    pages = DeadLetterPages(store)
    assert pages.count(Filter()) == 30
    assert [e["id"] for e in pages.page(Filter(), 0, 3)] == ["address:29", "profile:28",
                                                             "address:27"]
    assert pages.count(Filter(reason="invalid_email")) == 10
    assert [e["customer_id"] for e in pages.page(Filter(reason="invalid_email"), 8, 5)] == [
        "1", "0"]
    assert pages.count(Filter(step="address")) == 15
    both = Filter(reason="invalid_phone", step="profile")
    assert pages.count(both) == 10
    assert [e["id"] for e in pages.page(both, 0, 2)] == ["profile:28", "profile:26"]
    since = Filter(since=iso_utc(T0 + timedelta(minutes=25)))
    assert pages.count(since) == 5
    assert pages.page(Filter(), 10_000, 50) == []
    assert pages.counts_by_reason() == {"invalid_email": 10, "invalid_phone": 20}
    assert pages.counts_by_step() == {"profile": 15, "address": 15}
    # The store's own listing uses the indexes as well, for the CLI's --step.
    assert [e["id"] for e in store.list(step="address", reason="invalid_email")] == [
        "address:9", "address:7", "address:5", "address:3", "address:1"]


def test_malformed_filters_are_refused() -> None:
    for bad in ({"reason": "nope"}, {"step": "nope"}, {"since": "yesterday"}):
        with pytest.raises(ValueError):
            Filter(**bad)  # type: ignore[arg-type]


def test_indexes_follow_remove_re_record_and_trim(redis_client: redis.Redis) -> None:
    clock = Clock()
    store = filled(redis_client, clock, n=4)
    pages = DeadLetterPages(store)
    assert store.remove("profile:0")
    # Re-recorded with another reason: it leaves the old reason's index.
    store.record(customer_id="1", step="address", reason="invalid_country", errors=[])
    assert pages.counts_by_reason() == {"invalid_email": 2, "invalid_country": 1}
    assert pages.counts_by_step() == {"profile": 1, "address": 2}
    # Past retention, trimming empties the indexes too, even for hashes already expired.
    clock.moment = T0 + timedelta(days=31)
    redis_client.delete(store.entry_key("profile:2"))
    store.trim()
    assert pages.counts_by_reason() == {} and pages.counts_by_step() == {}
    # Trimming by count keeps the indexes in step.
    small = DeadLetterStore(redis_client, prefix="small", max_entries=3, now=clock)
    for i in range(5):
        clock.moment += timedelta(seconds=1)
        small.record(customer_id=str(i), step="profile", reason="invalid_email", errors=[])
    assert DeadLetterPages(small).counts_by_reason() == {"invalid_email": 3}


def test_ensure_indexed_covers_entries_from_before_the_indexes(redis_client: redis.Redis
                                                                ) -> None:
    store = filled(redis_client, Clock(), n=6)
    for key in store.index_keys():  # as a store written by the previous version
        redis_client.delete(key)
    pages = DeadLetterPages(store)
    assert pages.count(Filter(reason="invalid_email")) == 0
    assert pages.ensure_indexed() == 6
    assert pages.count(Filter(reason="invalid_email")) == 6
    assert pages.count(Filter(step="address")) == 3
    assert pages.ensure_indexed() == 0  # once


def test_sessions_start_end_and_share_a_signing_key(redis_client: redis.Redis) -> None:
    sessions = AdminSessions(redis_client)
    first = sessions.start()
    assert sessions.get(first.session_id) == first
    assert first.tag == session_tag(first.session_id) and first.session_id not in first.tag
    assert 0 < int(redis_client.ttl(sessions.key(first.session_id))) <= 12 * 3600
    sessions.end(first.session_id)
    assert sessions.get(first.session_id) is None
    assert sessions.signing_key() == AdminSessions(redis_client).signing_key()


def test_lock_out_per_address(redis_client: redis.Redis) -> None:
    lockout = LoginLockout(redis_client, max_failures=3, lockout_seconds=600)
    for n in (1, 2):
        assert lockout.failed("198.51.100.1") == n
        assert lockout.locked_for("198.51.100.1") == 0
    lockout.failed("198.51.100.1")
    assert 590 <= lockout.locked_for("198.51.100.1") <= 600
    assert lockout.locked_for("198.51.100.2") == 0
    assert "198.51.100.1" not in lockout.key("198.51.100.1")  # hashed: no address in keys
    lockout.succeeded("198.51.100.1")
    assert lockout.locked_for("198.51.100.1") == 0


def test_limiter_usage_counts_grants_in_the_last_second_and_minute(
        redis_client: redis.Redis) -> None:
    limiter = RedisRateLimiter(redis_client, "acct", {"S": (3, 60)})
    for _ in range(3):
        assert limiter.try_acquire("S") == 0.0
    assert limiter.usage("S") == (3, 3)
    assert limiter.limits == {"S": (3, 60)}


def test_per_minute_counts_keep_the_last_hour_by_outcome(redis_client: redis.Redis) -> None:
    now = [1_800_000_000.0]
    metrics = Metrics(redis_client, clock=lambda: now[0])
    metrics.incr("syncs_total", {"step": "profile", "outcome": "created"})
    metrics.incr("syncs_total", {"step": "address", "outcome": "created"})
    metrics.incr("webhooks_total", {"result": "accepted"})  # not kept per minute
    now[0] += 120
    metrics.incr("syncs_total", {"step": "profile", "outcome": "rejected"}, 2)
    series = metrics.per_minute("syncs_total", 60)
    assert len(series) == 60
    assert series[-1] == (1_800_000_120 // 60 * 60, {"rejected": 2})
    assert series[-3][1] == {"created": 2} and series[-2][1] == {}
    ttl = redis_client.ttl(metrics.minute_key("syncs_total", series[-1][0]))
    assert 0 < int(ttl) <= 7200
    assert metrics.snapshot()["syncs_total"]  # the Prometheus counters are unchanged
