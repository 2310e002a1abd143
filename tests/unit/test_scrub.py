"""The pure masking rules behind log masking and Sentry's before_send."""

from __future__ import annotations

import json

import pytest

from worker.core.scrub import EMAIL_MASK, KEY_MASK, PHONE_MASK, scrub, scrub_text


@pytest.mark.parametrize(
    "text",
    [
        "contact jane.doe+tag@example.co.uk now",
        "UPPER.Case@Example.COM",
        "'o'brien@mail.example.org'",
    ],
)
def test_emails_are_masked(text: str) -> None:
    out = scrub_text(text)
    assert "@" not in out
    assert EMAIL_MASK in out


@pytest.mark.parametrize(
    "phone",
    ["+15555550123", "5555550123", "(555) 123-4567", "+1 555 123 4567", "555.123.4567",
     "+44 20 7946 0958", "555-1234567"],
)
def test_phone_numbers_are_masked(phone: str) -> None:
    out = scrub_text(f"phone was {phone}; retry")
    assert out == f"phone was {PHONE_MASK}; retry"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("Authorization: Klaviyo-API-Key pk_abcdef1234567890", "pk_abcdef1234567890"),
        ("header Bearer s3cr3t-token.value", "s3cr3t-token.value"),
        ("key=pk_0123456789abcdef in url", "pk_0123456789abcdef"),
        ("authorization: bearer abc", "abc"),
    ],
)
def test_api_keys_are_masked(text: str, secret: str) -> None:
    out = scrub_text(text)
    assert secret not in out
    assert KEY_MASK in out


@pytest.mark.parametrize(
    "text",
    [
        "tracking 550e8400-e29b-41d4-a716-446655440000 done",
        "revision 2026-07-15 and 2026-07-15T10:11:12",
        "took 1733040000.123 s",
        "peer 192.168.100.200",
        "short numbers 12345 and 123456",
        "customer 12345678 synced",
        '{"customer_id": "12345678", "step": "profile"}',
        "profile_id=987654321",
        '{"enqueued":["1234567","2345678","3456789"]}',
    ],
)
def test_ids_dates_and_small_numbers_stay(text: str) -> None:
    assert scrub_text(text) == text


def test_a_phone_after_an_id_is_still_masked() -> None:
    out = scrub_text('{"customer_id": "12345678", "phone": "+15555550123"}')
    assert out == f'{{"customer_id": "12345678", "phone": "{PHONE_MASK}"}}'


def test_scrub_walks_nested_structures_and_keeps_keys() -> None:
    event = {
        "message": "failed for a@b.io",
        "tags": {"customer_id": "5551234567", "tracking_guid": "abc"},
        "exception": {"values": [{"type": "X", "value": "phone 5551234567 rejected"}]},
        "breadcrumbs": {"values": [{"message": "Bearer tok123", "data": ("x@y.com", 3)}]},
        "extra": {"n": 7, "flag": None},
    }
    out = scrub(event)
    text = json.dumps(out)
    assert "a@b.io" not in text and "x@y.com" not in text and "tok123" not in text
    assert "phone [phone] rejected" in text
    # Keys are field names and stay; an id-keyed value is not mistaken for a phone.
    assert out["tags"] == {"customer_id": "5551234567", "tracking_guid": "abc"}
    assert out["breadcrumbs"]["values"][0]["data"] == (EMAIL_MASK, 3)
    assert out["extra"] == {"n": 7, "flag": None}
    assert event["message"] == "failed for a@b.io"  # the input is not modified


def test_scrub_decodes_bytes() -> None:
    assert scrub(b"mail me at q@r.st") == f"mail me at {EMAIL_MASK}"
