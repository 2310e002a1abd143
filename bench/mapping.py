"""Throughput of the pure core: map, validate profile and address, parse directives.

Run: ``python bench/mapping.py [N]`` (default 20,000 customers, one process, one core).
"""

from __future__ import annotations

import random
import sys
import time
from typing import Any

from worker.core.directives import parse_directives
from worker.core.mapping import load_mapping, map_customer
from worker.core.model import MappingContext
from worker.core.validation import validate_address, validate_profile

# (country as customers write it, a valid region, a valid postal code, national phone digits)
_PLACES = [
    ("United States", "NY", "10017", "212555{:04d}"),
    ("US", "California", "94105-1234", "415555{:04d}"),
    ("Canada", "QC", "H3Z 2Y7", "514555{:04d}"),
    ("CA", "Ontario", "K1A 0B1", "613555{:04d}"),
    ("United Kingdom", "London", "SW1A 1AA", "020794{:05d}"),
    ("GB", "Greater Manchester", "M1 1AE", "016149{:05d}"),
    ("Germany", "Berlin", "10115", "030123{:05d}"),
    ("DEU", "Bayern", "80331", "089123{:05d}"),
]
_PHONE_STYLES = [
    lambda digits: digits,
    lambda digits: f"({digits[:3]}) {digits[3:6]}-{digits[6:]}",
    lambda digits: ".".join((digits[:3], digits[3:6], digits[6:])),
    lambda digits: " ".join((digits[:4], digits[4:])),
]


def make_customer(index: int, rng: random.Random) -> dict[str, Any]:
    country, region, postal_code, phone_pattern = rng.choice(_PLACES)
    digits = phone_pattern.format(rng.randrange(10_000))
    customer: dict[str, Any] = {
        "id": index if index % 2 else str(index),
        "customer_number": rng.choice(_PHONE_STYLES)(digits),
        "first_name": f"First{index}",
        "last_name": f"Last{index}",
        "email_address": f" Person.{index}@Example.com ",
        "company": "Example Ltd" if index % 3 else "",
        "addresses": [
            {
                "address_1": f"{index} High Street",
                "city": "Town",
                "region": region,
                "country": country,
                "postal_code": postal_code,
                "is_primary_billing": False,
                "is_primary_shipping": True,
            },
            {
                "address_1": f"{index} Main Street",
                "address_2": "Suite 1",
                "city": "City",
                "region": region,
                "country": country,
                "postal_code": postal_code,
                "is_primary_billing": True,
                "is_primary_shipping": False,
            },
        ],
        "custom_fields": [
            {
                "id": "1",
                "custom_field_name": "SubscribeProfile",
                "value": rng.choice(["true", "False"]),
            },
            {"id": "2", "custom_field_name": "LIST_Newsletter", "value": "TRUE"},
            {
                "id": "3",
                "custom_field_name": "Loyalty Tier",
                "value": rng.choice(["gold", "silver"]),
            },
        ],
    }
    if index % 50 == 0:  # a few broken ones: bad phone, bad email, bad postal code
        customer["customer_number"] = "12"
        customer["email_address"] = "not-an-email"
        customer["addresses"][1]["postal_code"] = "???"
    return customer


def main(count: int = 20_000) -> float:
    rng = random.Random(42)
    customers = [make_customer(index, rng) for index in range(1, count + 1)]
    collections = load_mapping()
    contexts = [MappingContext(), MappingContext(linked_profile_id="01HBENCHPROFILE")]
    rejected = 0
    started = time.perf_counter()
    for index, customer in enumerate(customers):
        mapped = map_customer(customer, collections, contexts[index % 2])
        problems = validate_profile(mapped)
        _location, address_problems = validate_address(mapped)
        _directives, flag_problems = parse_directives(mapped)
        rejected += bool(problems or address_problems or flag_problems)
    elapsed = time.perf_counter() - started
    rate = count / elapsed
    print(f"mapping: {count} customers in {elapsed:.2f} s = {rate:.0f} customers/s (1 core)")
    print(f"         {rejected} rejected by validation")
    return rate


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)
