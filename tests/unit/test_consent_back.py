"""The pure parts of consent-sync: who opted out, the SubscribeProfile write-back, the filter
value, and the cursor that moves the watermark only past fully handled profiles."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from worker.core import consent_back as cb

T0 = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)


def profile(consent: str = "SUBSCRIBED", suppressions: list[dict[str, str]] | None = None,
            ) -> dict[str, Any]:
    return {"id": "P1", "attributes": {"subscriptions": {"email": {"marketing": {
        "consent": consent, "suppression": suppressions or []}}}}}


def test_filter_value_is_unquoted_utc_with_z() -> None:
    moment = datetime(2026, 12, 1, 11, 30, tzinfo=UTC) + timedelta(microseconds=250)
    assert cb.filter_time(moment) == "2026-12-01T11:30:00.000250Z"
    assert cb.filter_time(T0) == "2026-12-01T10:00:00Z"
    assert cb.suppressed_since_filter(T0) == (
        "greater-than(subscriptions.email.marketing.suppression.timestamp,"
        "2026-12-01T10:00:00Z)")


def test_unsubscribed_or_any_suppression_is_opted_out() -> None:
    assert cb.opted_out(profile("UNSUBSCRIBED"))
    assert cb.opted_out(profile("SUBSCRIBED", [{"reason": "SPAM_COMPLAINT",
                                                "timestamp": "2026-12-01T10:00:00+00:00"}]))
    assert not cb.opted_out(profile("SUBSCRIBED"))
    assert not cb.opted_out({"id": "P2", "attributes": {}})


def test_suppression_time_is_the_latest() -> None:
    found = profile("UNSUBSCRIBED", [
        {"reason": "UNSUBSCRIBE", "timestamp": "2026-12-01T10:00:00+00:00"},
        {"reason": "SPAM_COMPLAINT", "timestamp": "2026-12-01T12:00:00Z"}])
    assert cb.suppression_time(found) == T0 + timedelta(hours=2)
    assert cb.suppression_time(profile()) is None


def test_subscribe_false_changes_the_field_and_keeps_the_rest() -> None:
    customer = {"id": 7, "first_name": "Ann", "custom_fields": [
        {"id": 1, "custom_field_name": "SubscribeProfile", "value": "true"},
        {"id": 2, "custom_field_name": "LIST_News", "value": "true"}]}
    updated = cb.with_subscribe_false(customer)
    assert updated["custom_fields"][0] == {"id": 1, "custom_field_name": "SubscribeProfile",
                                           "value": "false"}
    assert updated["custom_fields"][1]["value"] == "true"
    assert updated["first_name"] == "Ann"
    assert customer["custom_fields"][0]["value"] == "true"  # the record read is not changed
    assert cb.subscribe_field(customer) is True
    assert cb.subscribe_field(updated) is False


def test_subscribe_false_is_added_when_missing() -> None:
    for customer in ({"id": 8}, {"id": 8, "custom_fields": None}):
        updated = cb.with_subscribe_false(customer)
        assert updated["custom_fields"] == [{"custom_field_name": "SubscribeProfile",
                                             "value": "false"}]
        assert cb.subscribe_field(customer) is None


def test_already_false_reads_any_case() -> None:
    customer = {"custom_fields": [{"custom_field_name": "SubscribeProfile", "value": " FALSE"}]}
    assert cb.subscribe_field(customer) is False


def test_cursor_moves_only_past_complete_timestamps() -> None:
    cursor = cb.ConsentCursor(T0)
    t1, t2 = T0 + timedelta(seconds=1), T0 + timedelta(seconds=2)
    cursor.done("A", t1)
    cursor.done("B", t1)
    # Others may still share t1: the watermark stays before it, A and B are remembered.
    assert cursor.watermark == T0 and cursor.handled("A") and cursor.handled("B")
    cursor.done("C", t2)
    assert cursor.watermark == t1
    assert cursor.open_ids == {"C"} and not cursor.handled("A")


def test_cursor_round_trips_through_its_saved_form() -> None:
    cursor = cb.ConsentCursor(T0)
    cursor.done("A", T0 + timedelta(seconds=5))
    restored = cb.ConsentCursor.from_dict(cursor.as_dict())
    assert restored == cursor
    assert cb.ConsentCursor.from_dict({"watermark": "not a time"}) is None


def test_beat_schedules_consent_sync_every_interval() -> None:
    import json
    import os
    import subprocess
    import sys

    probe = ("import celeryconfig, json; e = celeryconfig.beat_schedule['consent-sync']; "
             "print(json.dumps([e['task'], e['schedule'], "
             "celeryconfig.task_routes[e['task']]['queue']]))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          env={**os.environ, "CONSENT_SYNC_INTERVAL_SECONDS": "120"},
                          check=True)
    assert json.loads(done.stdout) == ["ipaas_klaviyo.consent_sync", 120.0, "reconcile"]


def test_settings_read_the_new_variables() -> None:
    from worker.config import Settings

    defaults = Settings.from_env({})
    assert defaults.consent_sync_interval_seconds == 900.0
    assert defaults.klaviyo_delete_profiles is False
    chosen = Settings.from_env({"CONSENT_SYNC_INTERVAL_SECONDS": "60",
                                "KLAVIYO_DELETE_PROFILES": "true"})
    assert chosen.consent_sync_interval_seconds == 60.0 and chosen.klaviyo_delete_profiles
