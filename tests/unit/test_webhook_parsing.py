"""Pure parsing of iPaaS.com webhook bodies: shapes, key spellings, scopes, ids."""

from __future__ import annotations

import json
from typing import Any

import pytest

from producers.webhook_parsing import (
    CUSTOMER,
    MAX_NESTING,
    OVERSIZED_NUMBER,
    TRANSACTION,
    MalformedBody,
    Rejection,
    SyncRequest,
    customer_id,
    nesting_depth,
    normalise_scope,
    parse_body,
    parse_payload,
    route,
)

GUID = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"


def notification(**overrides: Any) -> dict[str, Any]:
    base = {
        "action": "update", "id": "1001", "external_id": None, "destination": "4242",
        "scope": "customer/updated", "type": "Customer", "tracking_guid": GUID,
    }
    base.update(overrides)
    return base


def ids(payload: Any, correlation_id: str | None = None) -> list[str]:
    return [r.record_id for r in parse_payload(payload, correlation_id).requests]


def test_envelope_yields_one_request_per_customer_notification() -> None:
    parsed = parse_body(json.dumps({
        "id": "env-1", "attempt": 0,
        "notifications": [notification(), notification(id="1002", scope="customer/created")],
    }).encode())
    assert parsed.envelope_id == "env-1"
    assert parsed.requests == [
        SyncRequest(0, CUSTOMER, "1001", GUID),
        SyncRequest(1, CUSTOMER, "1002", GUID),
    ]
    assert parsed.ignored == 0 and parsed.rejected == []


def test_bare_notification_object() -> None:
    assert ids(notification(id="77")) == ["77"]


def test_bare_list_of_notifications() -> None:
    assert ids([notification(id="1"), notification(id="2")]) == ["1", "2"]


def test_pascal_case_keys() -> None:
    payload = {"Id": "env", "Attempt": 1, "Notifications": [
        {"Scope": "Customer/Updated", "Id": "5", "TrackingGuid": GUID},
        {"Scope": "customer/created", "External_Id": "6"},
        {"SCOPE": "customer/created", "ExternalId": "7", "Tracking_Guid": "g7"},
    ]}
    parsed = parse_payload(payload)
    assert [(r.record_id, r.tracking_guid) for r in parsed.requests] == [
        ("5", GUID), ("6", None), ("7", "g7")
    ]
    assert parsed.envelope_id == "env"


def test_exact_snake_case_key_wins_over_a_variant() -> None:
    assert ids({"Id": "from-pascal", "id": "from-snake", "scope": "customer/created"}) == [
        "from-snake"
    ]


@pytest.mark.parametrize("scope", [
    "customer/created", "customer/updated", "CUSTOMER/UPDATED", " Customer/Created ",
    "customer/updated/debug", "customer/created/DEBUG",
])
def test_customer_scopes_route_to_customer_sync(scope: str) -> None:
    assert route(scope) == CUSTOMER


@pytest.mark.parametrize("scope", [
    "customer/category/initialize", "product/poll", "giftcard/created",
    "transaction/deleted", "customer", "customer/updated/extra",
])
def test_other_scopes_are_not_routed(scope: str) -> None:
    assert route(scope) is None


@pytest.mark.parametrize("scope", ["transaction/created", "Transaction/Updated/debug"])
def test_transaction_scopes_route_to_transaction_sync(scope: str) -> None:
    assert route(scope) == TRANSACTION


def test_normalise_scope_strips_debug_and_case() -> None:
    assert normalise_scope("Customer/Updated/Debug") == "customer/updated"


def test_ignored_scopes_are_counted_not_rejected() -> None:
    parsed = parse_payload([notification(scope="product/poll"),
                            notification(scope="giftcard/created", id=None),
                            notification(id="9")])
    assert parsed.ignored == 2
    assert [r.record_id for r in parsed.requests] == ["9"]
    assert [r.index for r in parsed.requests] == [2]
    assert parsed.rejected == []


def test_external_id_is_used_when_id_is_missing_or_empty() -> None:
    assert ids([notification(id=None, external_id="E1"),
                notification(id="  ", external_id="E2")]) == ["E1", "E2"]


def test_numbers_become_strings_and_text_is_stripped() -> None:
    assert ids([notification(id=1001), notification(id=" 42 "), notification(id=7.0)]) == [
        "1001", "42", "7"
    ]


@pytest.mark.parametrize(("item", "error"), [
    (notification(id=None), "missing id"),
    (notification(id=""), "missing id"),
    (notification(id="   ", external_id=""), "missing id"),
    ({"scope": "customer/updated"}, "missing id"),
    (notification(id=True), "invalid id: must be a string or a number"),
    (notification(id=[1]), "invalid id: must be a string or a number"),
    (notification(id=1.5), "invalid id: must be a string or a number"),
    (notification(id="9" * 65), "invalid id: longer than 64 characters"),
    (notification(scope=None), "missing scope"),
    (notification(scope=5), "missing scope"),
    ("customer/updated 1001", "notification is not an object"),
    (7, "notification is not an object"),
])
def test_bad_notifications_are_rejected_with_index_and_reason(item: Any, error: str) -> None:
    parsed = parse_payload({"notifications": [notification(id="1"), item, notification(id="3")]})
    assert parsed.rejected == [Rejection(1, error)]
    assert [r.record_id for r in parsed.requests] == ["1", "3"]


def test_rejection_as_dict() -> None:
    assert Rejection(2, "missing id").as_dict() == {"index": 2, "error": "missing id"}


def test_correlation_header_stands_in_for_missing_tracking_guid() -> None:
    parsed = parse_payload([notification(tracking_guid=None, id="1"), notification(id="2")],
                           correlation_id=" corr-1 ")
    assert [r.tracking_guid for r in parsed.requests] == ["corr-1", GUID]


def test_empty_envelope_and_empty_list_are_valid_and_empty() -> None:
    payloads: list[Any] = [{"id": "e", "notifications": []}, []]
    for payload in payloads:
        parsed = parse_payload(payload)
        assert (parsed.requests, parsed.ignored, parsed.rejected) == ([], 0, [])


@pytest.mark.parametrize("raw", [b"", b"   ", b"not json", b'{"notifications": [', b"\xff\xfe{"])
def test_non_json_bodies_are_malformed(raw: bytes) -> None:
    with pytest.raises(MalformedBody):
        parse_body(raw)


def test_json_error_names_the_position_but_not_the_content() -> None:
    secret = b'{"email": "ana@example.com", oops}'
    with pytest.raises(MalformedBody) as caught:
        parse_body(secret)
    assert "line 1" in str(caught.value)
    assert "example.com" not in str(caught.value)


@pytest.mark.parametrize("payload", [
    "customer/updated", 42, None, True,
    {"notifications": {"scope": "customer/updated", "id": "1"}},
    {"notifications": "1001"},
    {"hello": "world"},
    {},
])
def test_wrong_shapes_are_malformed(payload: Any) -> None:
    with pytest.raises(MalformedBody):
        parse_payload(payload)


# --- the id rules ------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [
    ("1001", "1001"), (1001, "1001"), (7.0, "7"), (-5, "-5"), (" 42\t\r\n", "42"),
    ("x" * 64, "x" * 64), (10**63, "1" + "0" * 63), ("ü-7", "ü-7"), ("客户", "客户"),
    ("\U0001f600", "\U0001f600"), ("a b", "a b"),
])
def test_usable_customer_ids(value: Any, expected: str) -> None:
    assert customer_id(value) == (expected, "")


TOO_LONG = "invalid id: longer than 64 characters"
NOT_A_STRING = "invalid id: must be a string or a number"
UNUSABLE = "invalid id: contains control or unpaired surrogate characters"


@pytest.mark.parametrize(("value", "error"), [
    ("", ""), ("  ", ""),
    (True, NOT_A_STRING), ([1], NOT_A_STRING), ({"id": 1}, NOT_A_STRING), (1.5, NOT_A_STRING),
    (float("inf"), NOT_A_STRING), (float("-inf"), NOT_A_STRING), (float("nan"), NOT_A_STRING),
    ("x" * 65, TOO_LONG), (10**64, TOO_LONG), (-(10**64), TOO_LONG), (1e300, TOO_LONG),
    # Converting this one to text would raise ValueError (Python's 4,300-digit limit).
    pytest.param(10**5000, TOO_LONG, id="5001 digits"), (OVERSIZED_NUMBER, TOO_LONG),
    ("\ud800", UNUSABLE), ("a\udfffb", UNUSABLE), ("\ud83d", UNUSABLE), ("a\x00b", UNUSABLE),
    ("\x1b[31m", UNUSABLE), ("a\nb", UNUSABLE), ("\x7f", UNUSABLE), ("\x85x", UNUSABLE),
    ("\x1cx", UNUSABLE), ("line\u2028break", UNUSABLE),
])
def test_unusable_customer_ids(value: Any, error: str) -> None:
    assert customer_id(value) == (None, error)


def test_a_bad_id_is_rejected_with_its_index_and_the_good_ones_are_kept() -> None:
    raw = ('{"notifications": [{"scope": "customer/updated", "id": "1"},'
           ' {"scope": "customer/updated", "id": "\\ud800"},'
           ' {"scope": "customer/updated", "id": ' + "9" * 5000 + '},'
           ' {"scope": "customer/updated", "id": 1e400},'
           ' {"scope": "customer/updated", "id": "\\ud83d\\ude00"}]}').encode()
    parsed = parse_body(raw)
    assert [r.record_id for r in parsed.requests] == ["1", "\U0001f600"]
    assert parsed.rejected == [Rejection(1, UNUSABLE), Rejection(2, TOO_LONG),
                               Rejection(3, NOT_A_STRING)]


def test_a_bad_id_falls_back_to_external_id() -> None:
    assert ids([notification(id="\ud800", external_id="E1")]) == ["E1"]


def test_tracking_guid_and_envelope_id_with_unusable_characters_are_dropped() -> None:
    parsed = parse_payload({"id": "env\x00", "notifications": [
        notification(id="1", tracking_guid="\ud800"), notification(id="2", tracking_guid=10**900)
    ]}, correlation_id="corr")
    assert parsed.envelope_id is None
    assert [r.tracking_guid for r in parsed.requests] == ["corr", "corr"]


# --- the bounded parser ------------------------------------------------------------------


@pytest.mark.parametrize(("text", "depth"), [
    ("1", 0), ("[]", 1), ('{"a": [1, {"b": []}]}', 4), ('["[[[[", "{{"]', 1),
    ('["\\"[[["]', 1), ('"unterminated [[[', 0), ("[" * 100, 100), ("]]]", 0),
])
def test_nesting_depth_ignores_brackets_inside_strings(text: str, depth: int) -> None:
    assert nesting_depth(text) == depth


@pytest.mark.parametrize("raw", [
    b"[" * (1024 * 1024), b"[" * (MAX_NESTING + 1) + b"]" * (MAX_NESTING + 1),
    b'{"a":' * 200_000, b'{"notifications": [{"scope": "customer/updated", "x": ' + b"[" * 5000,
])
def test_deep_nesting_is_malformed_not_a_recursion_error(raw: bytes) -> None:
    with pytest.raises(MalformedBody, match="nested deeper than 32 levels"):
        parse_body(raw)


def test_nesting_up_to_the_limit_parses() -> None:
    extra = "[" * (MAX_NESTING - 3) + "]" * (MAX_NESTING - 3)
    raw = '{"notifications": [{"scope": "customer/updated", "id": "1", "x": ' + extra + "}]}"
    assert ids(json.loads(raw)) == ["1"]
    assert [r.record_id for r in parse_body(raw.encode()).requests] == ["1"]


@pytest.mark.parametrize("number", ["9" * 5000, "-" + "9" * 100_000, "1" + "0" * 400 + ".5",
                                    "1" * 66])
def test_huge_numbers_are_never_converted(number: str) -> None:
    # Anywhere in the body: as an id it is rejected, elsewhere it is simply not used.
    parsed = parse_body(('{"attempt": ' + number + ', "notifications": [{"scope": '
                         '"customer/updated", "id": ' + number + "}]}").encode())
    assert parsed.rejected == [Rejection(0, TOO_LONG)]


@pytest.mark.parametrize("raw", [b'"\\ud800', b'["' + b'\\"' * 100_000, b'"' * 100_000,
                                 b"\xed\xa0\x80", b"\xef\xbb\xbf\xef\xbb\xbf{}"])
def test_unterminated_strings_encoded_surrogates_and_double_boms_are_malformed(
    raw: bytes,
) -> None:
    with pytest.raises(MalformedBody):
        parse_body(raw)


def test_a_utf8_byte_order_mark_is_accepted() -> None:
    assert [r.record_id for r in parse_body(b"\xef\xbb\xbf" + json.dumps(
        notification(id="5")).encode()).requests] == ["5"]


def test_a_large_envelope_parses_every_notification() -> None:
    notes = [{"scope": "customer/updated", "id": "\ud800" if i % 2 else i} for i in range(20_000)]
    parsed = parse_body(json.dumps({"notifications": notes}).encode())
    assert len(parsed.requests) == len(parsed.rejected) == 10_000
    assert parsed.rejected[-1] == Rejection(19_999, UNUSABLE)
