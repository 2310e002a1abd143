"""The pure HTTP-outcome classifier: one retry policy for every outside call."""

from __future__ import annotations

import pytest

from worker.core.classify import (
    Classification,
    Verdict,
    classify_response,
    classify_transport_error,
    retry_after_seconds,
)

THROTTLED_BODY = (
    '{"errors": [{"id": "8c8f4aea", "status": 429, "code": "throttled", '
    '"title": "Request was throttled.", '
    '"detail": "Request was throttled. Expected available in 7 seconds."}]}'
)


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_success_statuses_are_ok(status: int) -> None:
    assert classify_response(status) == Classification(Verdict.OK)


def test_429_is_throttled_with_retry_after_header() -> None:
    verdict = classify_response(429, {"Retry-After": "3"})
    assert verdict == Classification(Verdict.THROTTLED, retry_after=3.0)


def test_429_without_header_reads_expected_available_from_body() -> None:
    verdict = classify_response(429, {}, THROTTLED_BODY)
    assert verdict.verdict is Verdict.THROTTLED
    assert verdict.retry_after == 7.0


def test_429_header_wins_over_body_hint() -> None:
    assert classify_response(429, {"retry-after": "2"}, THROTTLED_BODY).retry_after == 2.0


def test_429_with_nothing_to_go_on_has_no_retry_after() -> None:
    assert classify_response(429) == Classification(Verdict.THROTTLED, retry_after=None)


@pytest.mark.parametrize("status", [500, 502, 503, 504, 524, 599])
def test_server_errors_are_retried(status: int) -> None:
    assert classify_response(status).verdict is Verdict.RETRY


def test_503_keeps_its_retry_after() -> None:
    assert classify_response(503, {"RETRY-AFTER": "11"}).retry_after == 11.0


def test_cloudflare_challenge_header_makes_403_retryable() -> None:
    verdict = classify_response(403, {"CF-Mitigated": "Challenge"}, "<html></html>")
    assert verdict.verdict is Verdict.RETRY


def test_cloudflare_html_page_makes_403_retryable() -> None:
    body = "<html><title>Just a moment...</title><p>Cloudflare Ray ID</p></html>"
    verdict = classify_response(403, {"Content-Type": "Text/HTML; charset=UTF-8"}, body)
    assert verdict.verdict is Verdict.RETRY


def test_json_403_is_a_permanent_rejection() -> None:
    body = '{"errors": [{"code": "permission_denied", "title": "Missing scope"}]}'
    verdict = classify_response(403, {"Content-Type": "application/vnd.api+json"}, body)
    assert verdict.verdict is Verdict.REJECTED


def test_html_403_that_is_not_cloudflare_is_rejected() -> None:
    verdict = classify_response(403, {"Content-Type": "text/html"}, "<html>Forbidden</html>")
    assert verdict.verdict is Verdict.REJECTED


def test_404_and_409_are_left_to_the_caller() -> None:
    assert classify_response(404).verdict is Verdict.NOT_FOUND
    assert classify_response(409).verdict is Verdict.CONFLICT


@pytest.mark.parametrize("status", [400, 401, 405, 413, 415, 422])
def test_other_client_errors_are_rejected(status: int) -> None:
    assert classify_response(status).verdict is Verdict.REJECTED


def test_transport_errors_are_always_retried() -> None:
    for kind in ("timeout", "connection_reset", "connection_refused"):
        assert classify_transport_error(kind).verdict is Verdict.RETRY


def test_negative_retry_after_is_clamped_to_zero() -> None:
    assert retry_after_seconds({"retry-after": "-5"}) == 0.0


def test_fractional_retry_after_is_kept() -> None:
    assert retry_after_seconds({"retry-after": "1.5"}) == 1.5


def test_http_date_retry_after_falls_back_to_body_hint() -> None:
    headers = {"retry-after": "Wed, 21 Oct 2026 07:28:00 GMT"}
    assert retry_after_seconds(headers, "Expected available in 4 seconds") == 4.0
    assert retry_after_seconds(headers) is None


@pytest.mark.parametrize("value", ["inf", "nan", "-inf"])
def test_non_finite_retry_after_is_ignored(value: str) -> None:
    assert retry_after_seconds({"retry-after": value}) is None
    assert retry_after_seconds({"retry-after": value}, "Expected available in 1 second.") == 1.0


def test_retry_after_header_name_is_case_insensitive() -> None:
    assert retry_after_seconds({"Retry-After": "9"}) == 9.0


def test_body_hint_accepts_singular_and_decimal_seconds() -> None:
    assert retry_after_seconds({}, "Expected available in 1 second.") == 1.0
    assert retry_after_seconds({}, "expected AVAILABLE in 2.5 seconds") == 2.5
    assert retry_after_seconds({}, "Request was throttled.") is None
