"""The pure pieces of the batched lists step: batch keys, queued items, refused rows."""

from __future__ import annotations

import pytest

from worker.core import reasons
from worker.core.batch_outcomes import (
    BatchKey,
    QueuedItem,
    distinct_rows,
    refused_rows,
    row_index,
    step_outcome,
)
from worker.core.errors import FieldError
from worker.core.subscriptions import REMOVE_FROM_LIST, SUBSCRIBE, UNSUBSCRIBE

REFUSED = FieldError("email", reasons.KLAVIYO_REJECTED, "invalid: Invalid input.")


@pytest.mark.parametrize("key", [
    BatchKey(SUBSCRIBE, "XyZ12", True),
    BatchKey(SUBSCRIBE, None, False),
    BatchKey(UNSUBSCRIBE, None),
    BatchKey(REMOVE_FROM_LIST, "Ab:9"),  # a colon in a list id survives the round trip
])
def test_batch_key_round_trips_through_its_text(key: BatchKey) -> None:
    assert BatchKey.decode(key.encode()) == key


def test_batch_key_limits_follow_klaviyo() -> None:
    assert BatchKey(SUBSCRIBE, "L").limit == 1000
    assert BatchKey(UNSUBSCRIBE, None).limit == 100
    assert BatchKey(REMOVE_FROM_LIST, "L").limit == 1000


@pytest.mark.parametrize("text", ["nonsense:L:0", "subscribe:L:2", "subscribe"])
def test_a_foreign_key_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        BatchKey.decode(text)


def test_queued_item_round_trips_and_ignores_unknown_fields() -> None:
    item = QueuedItem("task-1", 2, "77", "01P", "a@example.com", None, "2026-01-01T00:00:00")
    assert QueuedItem.from_json(item.to_json()) == item
    older = '{"step_id":"t","action":0,"customer_id":"1","profile_id":"P","extra":1}'
    assert QueuedItem.from_json(older) == QueuedItem("t", 0, "1", "P")


@pytest.mark.parametrize("pointer, expected", [
    ("/data/attributes/profiles/data/3/attributes/email", (3, "email")),
    ("/data/attributes/profiles/data/12/id", (12, "id")),
    ("/data/attributes/profiles/data/0", (0, None)),
    ("/data/4/id", (4, "id")),
    ("/data/attributes/historical_import", (None, None)),
    ("/data", (None, None)),
    (None, (None, None)),
])
def test_row_index_reads_subscription_and_membership_pointers(pointer, expected) -> None:
    assert row_index(pointer) == expected


def test_refused_rows_groups_problems_by_row_with_field_names() -> None:
    rows = refused_rows([
        ("/data/attributes/profiles/data/3/attributes/email", REFUSED),
        ("/data/attributes/profiles/data/3/attributes/phone_number", REFUSED),
        ("/data/attributes/profiles/data/0/id", REFUSED),
    ], row_count=5)
    assert rows is not None and sorted(rows) == [0, 3]
    assert [e.field for e in rows[3]] == ["email", "phone_number"]
    assert rows[0][0].reason == reasons.KLAVIYO_REJECTED


def test_refused_rows_is_none_unless_every_error_names_a_row_sent() -> None:
    assert refused_rows([("/data/attributes/profiles/data/1/attributes/email", REFUSED),
                         ("/data/relationships/list", REFUSED)], row_count=3) is None
    assert refused_rows([("/data/attributes/profiles/data/9/id", REFUSED)], row_count=3) is None
    assert refused_rows([], row_count=3) is None


def test_distinct_rows_sends_each_identity_once_and_remembers_the_owners() -> None:
    sent, owners = distinct_rows(["P1", "P2", "P1", "P3", "P2"])
    assert sent == [0, 1, 3]
    assert owners == [[0, 2], [1, 4], [3]]


def test_step_outcome() -> None:
    assert step_outcome(None) == "synced"
    assert step_outcome(reasons.KLAVIYO_REJECTED) == "rejected"
