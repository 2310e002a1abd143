"""Primary billing address rules: country, region, postal code, required fields."""

from __future__ import annotations

from typing import Any

import pytest

from worker.core import reasons
from worker.core.address import country_alpha2, country_rules, find_country
from worker.core.model import MappedCustomer
from worker.core.validation import validate_address


def with_location(has_primary_billing: bool = True, **location: Any) -> MappedCustomer:
    mapped = MappedCustomer(customer_id="1", collection="add", location=location)
    mapped.has_primary_billing = has_primary_billing
    return mapped


def address(country: str, region: str, zip_code: str, **extra: Any) -> MappedCustomer:
    return with_location(
        address1="1 Main St",
        city="Somewhere",
        country=country,
        region=region,
        zip=zip_code,
        **extra,
    )


def reasons_of(mapped: MappedCustomer) -> list[tuple[str, str]]:
    location, errors = validate_address(mapped)
    assert (location is None) == bool(errors)
    return [(e.field, e.reason) for e in errors]


@pytest.mark.parametrize(
    ("name", "alpha_2", "common_name"),
    [
        ("US", "US", "United States"),
        ("usa", "US", "United States"),
        ("united states of america", "US", "United States"),
        ("Germany", "DE", "Germany"),
        ("DEU", "DE", "Germany"),
        ("gb", "GB", "United Kingdom"),
        (" Canada ", "CA", "Canada"),
        ("Bolivia, Plurinational State of", "BO", "Bolivia"),
    ],
)
def test_countries_by_name_official_name_or_code(name: str, alpha_2: str, common_name: str) -> None:
    country = find_country(name)
    assert country is not None
    assert (country.alpha_2, country.name) == (alpha_2, common_name)
    assert country_alpha2(name) == alpha_2


@pytest.mark.parametrize("name", ["Narnia", "", "  ", "XX"])
def test_unknown_countries(name: str) -> None:
    assert find_country(name) is None
    assert country_alpha2(name) is None


def test_country_alpha2_ignores_non_text() -> None:
    assert country_alpha2(None) is None
    assert country_alpha2(840) is None


@pytest.mark.parametrize(
    ("country", "region", "zip_code", "expected_country"),
    [
        ("United States", "NY", "10017", "United States"),
        ("US", "new york", "10017-1234", "United States"),
        ("Canada", "QC", "h3z 2y7", "Canada"),
        ("CA", "Québec", "H3Z2Y7", "Canada"),
        ("United Kingdom", "London", "SW1A 1AA", "United Kingdom"),
        ("GB", "Greater Manchester", "m1 1ae", "United Kingdom"),
        ("Germany", "Berlin", "10115", "Germany"),
        ("DE", "Bayern", "80331", "Germany"),
    ],
)
def test_valid_addresses_become_a_klaviyo_location(
    country: str, region: str, zip_code: str, expected_country: str
) -> None:
    location, errors = validate_address(address(country, region, f" {zip_code} "))
    assert errors == []
    assert location == {
        "address1": "1 Main St",
        "city": "Somewhere",
        "region": region,
        "zip": zip_code,
        "country": expected_country,
    }


def test_address2_is_sent_only_when_present() -> None:
    location, _ = validate_address(address("US", "NY", "10017", address2="Suite 5"))
    assert location is not None and location["address2"] == "Suite 5"
    location, _ = validate_address(address("US", "NY", "10017"))
    assert location is not None and "address2" not in location


@pytest.mark.parametrize(
    ("country", "region", "zip_code"),
    [
        ("US", "NY", "1001"),
        ("US", "NY", "ABCDE"),
        ("US", "NY", "10017-12"),
        ("CA", "ON", "12345"),
        ("CA", "ON", "D1A 0B1"),  # D is never a Canadian first letter
        ("GB", "London", "12345"),
        ("GB", "London", "SW1A 1AAX"),
        ("DE", "Berlin", "1011"),
        ("DE", "Berlin", "D-10115"),
    ],
)
def test_bad_postal_codes_per_country(country: str, region: str, zip_code: str) -> None:
    assert reasons_of(address(country, region, zip_code)) == [("Zip", reasons.INVALID_POSTAL_CODE)]


def test_countries_without_a_postal_format_accept_any_postal_code() -> None:
    assert country_rules("HK").postal_patterns == ()
    assert reasons_of(address("Hong Kong", "Kowloon", "anything")) == []


def test_unknown_country() -> None:
    assert reasons_of(address("Narnia", "Lantern Waste", "12345")) == [
        ("Country", reasons.INVALID_COUNTRY)
    ]


@pytest.mark.parametrize(
    ("country", "region"), [("US", "Bavaria"), ("US", "XX"), ("CA", "NY"), ("United States", "QC")]
)
def test_region_not_in_the_country(country: str, region: str) -> None:
    assert reasons_of(address(country, region, "10017" if "U" in country else "K1A 0B1")) == [
        ("Region", reasons.INVALID_REGION)
    ]


def test_countries_without_regions_accept_any_region() -> None:
    assert country_rules("DE").regions == frozenset()
    assert reasons_of(address("DE", "Anywhere at all", "10115")) == []


def test_region_and_postal_code_problems_are_reported_together() -> None:
    assert reasons_of(address("US", "Bavaria", "1")) == [
        ("Region", reasons.INVALID_REGION),
        ("Zip", reasons.INVALID_POSTAL_CODE),
    ]


def test_every_missing_field_is_reported() -> None:
    assert reasons_of(with_location()) == [
        ("Address1", reasons.MISSING_REQUIRED_FIELD),
        ("City", reasons.MISSING_REQUIRED_FIELD),
        ("Region", reasons.MISSING_REQUIRED_FIELD),
        ("Country", reasons.MISSING_REQUIRED_FIELD),
        ("Zip", reasons.MISSING_REQUIRED_FIELD),
    ]


def test_missing_fields_and_rule_breaks_together() -> None:
    mapped = with_location(country="US", region="Bavaria", zip="1")
    assert reasons_of(mapped) == [
        ("Address1", reasons.MISSING_REQUIRED_FIELD),
        ("City", reasons.MISSING_REQUIRED_FIELD),
        ("Region", reasons.INVALID_REGION),
        ("Zip", reasons.INVALID_POSTAL_CODE),
    ]


def test_no_primary_billing_address() -> None:
    mapped = address("US", "NY", "10017")
    mapped.has_primary_billing = False
    assert reasons_of(mapped) == [("Addresses", reasons.MISSING_PRIMARY_BILLING_ADDRESS)]


def test_a_numeric_zip_is_accepted() -> None:
    location, errors = validate_address(address("DE", "Berlin", 10115))  # type: ignore[arg-type]
    assert errors == [] and location is not None and location["zip"] == "10115"


def test_messages_never_echo_values() -> None:
    _, errors = validate_address(address("Narnia", "Secret Region", "SECRET-ZIP"))
    for error in errors:
        assert "Narnia" not in error.message and "SECRET" not in error.message
