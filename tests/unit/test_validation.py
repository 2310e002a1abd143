"""Profile validation: every problem at once, by field, with reason codes from reasons.py."""

from __future__ import annotations

from typing import Any

import pytest

from worker.core import reasons
from worker.core.directives import parse_directives
from worker.core.errors import FieldError, headline_reason
from worker.core.mapping import load_mapping, map_customer
from worker.core.model import MappedCustomer, MappingContext
from worker.core.validation import validate_address, validate_profile

GOOD = {
    "external_id": "55260",
    "email": "ada@example.com",
    "phone_number": "+12125550123",
    "first_name": "Ada",
    "last_name": "Lovelace",
}


def profile(
    customer_id: str | None = "55260", problems: Any = (), **attributes: Any
) -> MappedCustomer:
    values = {**GOOD, **attributes}
    return MappedCustomer(
        customer_id=customer_id,
        collection="add",
        attributes={k: v for k, v in values.items() if v is not None},
        problems=list(problems),
    )


def reasons_of(mapped: MappedCustomer) -> list[tuple[str, str]]:
    return [(e.field, e.reason) for e in validate_profile(mapped)]


def test_a_complete_profile_is_valid() -> None:
    assert validate_profile(profile()) == []


def test_email_alone_or_phone_alone_is_enough() -> None:
    assert validate_profile(profile(phone_number=None)) == []
    assert validate_profile(profile(email=None)) == []


def test_neither_email_nor_phone() -> None:
    assert reasons_of(profile(email=None, phone_number=None)) == [
        ("Email", reasons.MISSING_IDENTIFIER)
    ]


def test_an_invalid_phone_is_reported_instead_of_missing_identifier() -> None:
    invalid = FieldError("PhoneNumber", reasons.INVALID_PHONE, "not a valid phone number")
    mapped = profile(email=None, phone_number=None, problems=[invalid])
    assert reasons_of(mapped) == [("PhoneNumber", reasons.INVALID_PHONE)]


def test_an_invalid_phone_rejects_even_with_an_email() -> None:
    invalid = FieldError("PhoneNumber", reasons.INVALID_PHONE, "not a valid phone number")
    assert reasons_of(profile(phone_number=None, problems=[invalid])) == [
        ("PhoneNumber", reasons.INVALID_PHONE)
    ]


@pytest.mark.parametrize("email", ["not-an-email", "a@", "@example.com", "a b@example.com", "a@b"])
def test_invalid_email(email: str) -> None:
    assert reasons_of(profile(email=email)) == [("Email", reasons.INVALID_EMAIL)]


@pytest.mark.parametrize(("customer_id", "external_id"), [(None, None), (None, "1"), ("1", None)])
def test_missing_customer_id(customer_id: str | None, external_id: str | None) -> None:
    assert reasons_of(profile(customer_id=customer_id, external_id=external_id)) == [
        ("ExternalId", reasons.MISSING_CUSTOMER_ID)
    ]


def test_names_are_required() -> None:
    assert reasons_of(profile(first_name=None, last_name=None)) == [
        ("FirstName", reasons.MISSING_REQUIRED_FIELD),
        ("LastName", reasons.MISSING_REQUIRED_FIELD),
    ]


def test_every_problem_at_once_and_the_headline() -> None:
    invalid = FieldError("PhoneNumber", reasons.INVALID_PHONE, "not a valid phone number")
    mapped = profile(
        customer_id=None, email="broken", phone_number=None, first_name=None, problems=[invalid]
    )
    errors = validate_profile(mapped)
    assert [(e.field, e.reason) for e in errors] == [
        ("ExternalId", reasons.MISSING_CUSTOMER_ID),
        ("Email", reasons.INVALID_EMAIL),
        ("PhoneNumber", reasons.INVALID_PHONE),
        ("FirstName", reasons.MISSING_REQUIRED_FIELD),
    ]
    assert headline_reason(errors) == reasons.MISSING_CUSTOMER_ID
    for error in errors:
        assert "broken" not in error.message


# --- end to end through the seed mapping: the seed's "Testing & Validation" table ----------


def seed_customer(**changes: Any) -> dict[str, Any]:
    customer: dict[str, Any] = {
        "id": "55260",
        "customer_number": "+1 212 555 0123",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "email_address": "ada@example.com",
        "addresses": [
            {
                "address_1": "89 E 42nd St",
                "city": "New York",
                "region": "NY",
                "country": "US",
                "postal_code": "10017",
                "is_primary_billing": True,
            }
        ],
    }
    customer.update(changes)
    return customer


def all_reasons(customer: dict[str, Any]) -> set[str]:
    mapped = map_customer(customer, load_mapping(), MappingContext())
    errors = validate_profile(mapped) + validate_address(mapped)[1] + parse_directives(mapped)[1]
    return {e.reason for e in errors}


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, set()),  # valid customer with email and phone
        ({"customer_number": ""}, set()),  # email alone
        ({"email_address": None}, set()),  # phone alone: matched by phone later
        ({"customer_number": "", "email_address": ""}, {reasons.MISSING_IDENTIFIER}),
        ({"customer_number": "555"}, {reasons.INVALID_PHONE}),
        ({"id": None}, {reasons.MISSING_CUSTOMER_ID}),
        ({"email_address": "nope"}, {reasons.INVALID_EMAIL}),
        ({"last_name": ""}, {reasons.MISSING_REQUIRED_FIELD}),
        ({"addresses": []}, {reasons.MISSING_PRIMARY_BILLING_ADDRESS}),
        (
            {"custom_fields": [{"custom_field_name": "LIST_News", "value": "yes"}]},
            {reasons.INVALID_FLAG},
        ),
    ],
)
def test_seed_testing_table(changes: dict[str, Any], expected: set[str]) -> None:
    assert all_reasons(seed_customer(**changes)) == expected


def test_seed_invalid_postal_code_or_country_rejects_the_address_only() -> None:
    customer = seed_customer()
    customer["addresses"][0]["postal_code"] = "ABC"
    mapped = map_customer(customer, load_mapping(), MappingContext())
    assert validate_profile(mapped) == []
    assert {e.reason for e in validate_address(mapped)[1]} == {reasons.INVALID_POSTAL_CODE}
    customer["addresses"][0]["country"] = "Atlantis"
    mapped = map_customer(customer, load_mapping(), MappingContext())
    assert {e.reason for e in validate_address(mapped)[1]} == {reasons.INVALID_COUNTRY}
