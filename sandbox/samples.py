"""Sample customers covering every row of the seed's "Testing & Validation" table, plus
the identity traps that broke other integrations. The demo and the integration tests use
them; each case states the outcome the service must reach.

All data is invented: example.com addresses and 201-555-01xx numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DOUBLE_OPT_IN_LIST = "Newsletter"
SEED_LIST = "Sms Subscribers"  # the seed mapping's static LIST_ destination


def address(**overrides: Any) -> dict[str, Any]:
    base = {
        "id": 1,
        "address_1": "89 E 42nd St",
        "address_2": "1st floor",
        "city": "New York",
        "region": "NY",
        "country": "United States",
        "postal_code": "10017",
        "phone_number": None,
        "is_primary_billing": True,
        "is_primary_shipping": True,
    }
    base.update(overrides)
    return base


def customer(
    customer_id: int,
    first: str | None,
    last: str | None,
    email: str | None,
    phone: str | None,
    *,
    addresses: list[dict[str, Any]] | None = None,
    custom_fields: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "id": customer_id,
        "customer_number": phone,
        "first_name": first,
        "last_name": last,
        "email_address": email,
        "company": "Example Trading Co",
        "comment": None,
        "category_id": None,
        "created_datetime": "2026-11-02T09:15:00+00:00",
        "updated_datetime": "2026-11-30T16:20:00+00:00",
        "addresses": [address()] if addresses is None else addresses,
        "custom_fields": [
            {"id": str(i), "custom_field_name": name, "value": value}
            for i, (name, value) in enumerate((custom_fields or {}).items(), start=1)
        ],
        "external_ids": [],
    }


@dataclass
class SampleCase:
    customer_id: str
    case: str
    record: dict[str, Any] | None  # None: the id does not exist in iPaaS.com
    expect_profile: str  # "created" | "updated" | "rejected:<reason>"
    expect_address: str | None = None  # "synced" | "rejected:<reason>" | None (step not run)
    expect_lists: str | None = None
    existing_profile: dict[str, Any] | None = None  # a Klaviyo profile present beforehand
    notes: list[str] = field(default_factory=list)


def sample_cases() -> list[SampleCase]:
    return [
        SampleCase(
            "1001", "valid customer (email and phone)",
            customer(1001, "Ana", "Silva", "ana.silva@example.com", "(201) 555-0101"),
            "created", "synced", "synced",
        ),
        SampleCase(
            "1002", "invalid customer id", None, "rejected:customer_not_found",
        ),
        SampleCase(
            "1003", "invalid phone number",
            customer(1003, "Ben", "Okafor", "ben.okafor@example.com", "555-01"),
            "rejected:invalid_phone",
        ),
        SampleCase(
            "1004", "missing email, phone matches a profile",
            customer(1004, "Chen", "Wei", None, "201.555.0104"),
            "updated", "synced", "synced",
            existing_profile={"phone_number": "+12015550104", "first_name": "Chen"},
        ),
        SampleCase(
            "1005", "missing both email and phone",
            customer(1005, "Dana", "Kowalski", None, None),
            "rejected:missing_identifier",
        ),
        SampleCase(
            "1006", "SubscribeProfile = false",
            customer(1006, "Eve", "Moreau", "eve.moreau@example.com", "2015550106",
                     custom_fields={"SubscribeProfile": "false"}),
            "created", "synced", "synced",
        ),
        SampleCase(
            "1007", "list assignment, double opt-in (LIST_)",
            customer(1007, "Farah", "Haddad", "farah.haddad@example.com", "2015550107",
                     custom_fields={f"LIST_{DOUBLE_OPT_IN_LIST}": "true"}),
            "created", "synced", "synced",
        ),
        SampleCase(
            "1008", "list assignment, single opt-in (UCLIST_)",
            customer(1008, "Gus", "Lindqvist", "gus.lindqvist@example.com", "2015550108",
                     custom_fields={f"UCLIST_{DOUBLE_OPT_IN_LIST}": "true"}),
            "created", "synced", "synced",
        ),
        SampleCase(
            "1009", "invalid postal code",
            customer(1009, "Hana", "Sato", "hana.sato@example.com", "2015550109",
                     addresses=[address(postal_code="ABCDE")]),
            "created", "rejected:invalid_postal_code", "synced",
        ),
        SampleCase(
            "1010", "invalid country",
            customer(1010, "Ivan", "Petrov", "ivan.petrov@example.com", "2015550110",
                     addresses=[address(country="Atlantis")]),
            "created", "rejected:invalid_country", "synced",
        ),
        SampleCase(
            "1011", "email with + matches its existing profile",
            customer(1011, "Lee", "Park", "lee+vip@example.com", "2015550111"),
            "updated", "synced", "synced",
            existing_profile={"email": "lee+vip@example.com", "first_name": "Lee"},
        ),
    ]
