"""GetKlaviyoFormattedPhoneNumber's core: digits in, E.164 out, only for valid numbers."""

from __future__ import annotations

import pytest

from worker.core.phone import PhoneResult, format_phone


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("2125550123", "US", "+12125550123"),
        ("(212) 555-0123", "US", "+12125550123"),
        ("212.555.0123", "US", "+12125550123"),
        (" 212 555 0123 ", "US", "+12125550123"),
        (2125550123, "US", "+12125550123"),
        ("020 7946 0958", "GB", "+442079460958"),
        ("030 123456", "DE", "+4930123456"),
        ("02 9876 5432", "AU", "+61298765432"),
        ("0412 345 678", "AU", "+61412345678"),
        ("+44 20 7946 0958", "US", "+442079460958"),
        ("+1 (212) 555-0123", "DE", "+12125550123"),
        ("0049 30 123456", "DE", "+4930123456"),
        ("0049 30 123456", "US", "+4930123456"),
        ("011 44 20 7946 0958", "US", "+442079460958"),
        ("2125550123", "us", "+12125550123"),
    ],
)
def test_valid_numbers_become_e164(raw: object, region: str, expected: str) -> None:
    assert format_phone(raw, region) == PhoneResult(expected, False)


@pytest.mark.parametrize(
    "raw",
    ["12", "555-0123", "abc", "CALL-ME", "+1 212", "0000000000", "+999 123456789", "1" * 20],
)
def test_invalid_numbers_are_flagged_not_guessed(raw: str) -> None:
    assert format_phone(raw, "US") == PhoneResult(None, True)


@pytest.mark.parametrize("raw", [None, "", "   ", "\t\n"])
def test_empty_input_is_no_phone_and_not_invalid(raw: object) -> None:
    assert format_phone(raw, "US") == PhoneResult(None, False)


def test_the_region_decides_how_a_national_number_reads() -> None:
    assert format_phone("030 123456", "DE").e164 == "+4930123456"
    assert format_phone("030 123456", "US").invalid


def test_an_unknown_region_makes_a_national_number_invalid() -> None:
    assert format_phone("2125550123", "ZZ") == PhoneResult(None, True)
    assert format_phone("+12125550123", "ZZ").e164 == "+12125550123"
