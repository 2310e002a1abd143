"""The mapping collections: the bundled seed mapping, routing, and mapping-file errors."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest

from worker.core.directives import parse_directives
from worker.core.errors import ConfigurationError
from worker.core.mapping import (
    MappingCollections,
    MappingFileError,
    load_mapping,
    map_customer,
    profile_attributes,
)
from worker.core.model import ADD, UPDATE, MappingContext

LINKED = MappingContext(linked_profile_id="01HLINKEDPROFILE")


def seed_customer(**changes: Any) -> dict[str, Any]:
    customer: dict[str, Any] = {
        "id": 55260,
        "customer_number": "(212) 555-0123",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "email_address": "  Ada.Lovelace@Example.COM ",
        "company": "Analytical Engines",
        "addresses": [
            {
                "address_1": "9 Ship Lane",
                "city": "Boston",
                "region": "MA",
                "country": "United States",
                "postal_code": "02110",
                "is_primary_billing": False,
                "is_primary_shipping": True,
            },
            {
                "address_1": "89 E 42nd St",
                "address_2": "1st floor",
                "city": "New York",
                "region": "NY",
                "country": "United States",
                "postal_code": "10017",
                "phone_number": "212-555-0199",
                "is_primary_billing": True,
                "is_primary_shipping": False,
            },
        ],
        "custom_fields": [],
    }
    customer.update(changes)
    return customer


@pytest.fixture(scope="module")
def seed() -> MappingCollections:
    return load_mapping()


# --- the bundled seed mapping ---------------------------------------------------------------


def test_add_collection_routes_every_seed_row(seed: MappingCollections) -> None:
    mapped = map_customer(seed_customer(), seed, MappingContext())
    assert mapped.collection == ADD
    assert mapped.customer_id == "55260"
    assert mapped.profile_id is None  # GetExternalIdAsync: not linked yet
    assert mapped.resource_type == "profile"
    assert mapped.attributes == {
        "email": "ada.lovelace@example.com",
        "phone_number": "+12125550123",
        "external_id": "55260",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "organization": "Analytical Engines",
    }
    assert mapped.location == {
        "address1": "89 E 42nd St",
        "address2": "1st floor",
        "city": "New York",
        "country": "United States",
        "region": "NY",
        "zip": "10017",
    }
    assert mapped.directives == {"LIST_Sms Subscribers": True, "SubscribeProfile": True}
    # The seed's static true is a flag: a JSON boolean, not the text "true".
    assert mapped.properties == {"My Custom": "Example values", "Claustrophobic List": True}
    assert mapped.has_primary_billing is True
    assert mapped.problems == []


def test_update_collection_is_chosen_for_a_linked_customer(seed: MappingCollections) -> None:
    mapped = map_customer(seed_customer(), seed, LINKED)
    assert mapped.collection == UPDATE
    assert mapped.profile_id == "01HLINKEDPROFILE"
    assert mapped.directives == {}  # no consent statics on update
    assert mapped.attributes["email"] == "ada.lovelace@example.com"
    assert mapped.location["zip"] == "10017"
    assert mapped.properties == {"My Custom": "Example values", "Claustrophobic List": True}


def test_update_is_add_minus_the_consent_statics(seed: MappingCollections) -> None:
    add = [m.destination for m in seed.add]
    update = [m.destination for m in seed.update]
    assert [d for d in add if d not in ("SubscribeProfile", "LIST_Sms Subscribers")] == update
    assert len(add) == 18


def test_empty_and_missing_values_are_dropped(seed: MappingCollections) -> None:
    customer = seed_customer(company="", customer_number=None, last_name="   ")
    customer["addresses"][1].pop("address_2")
    mapped = map_customer(customer, seed, MappingContext())
    assert "organization" not in mapped.attributes
    assert "phone_number" not in mapped.attributes
    assert "last_name" not in mapped.attributes
    assert "address2" not in mapped.location
    assert mapped.problems == []


def test_the_first_primary_billing_address_wins(seed: MappingCollections) -> None:
    customer = seed_customer()
    customer["addresses"].append({"address_1": "Later", "is_primary_billing": True})
    customer["addresses"][0]["is_primary_billing"] = "TRUE"
    mapped = map_customer(customer, seed, MappingContext())
    assert mapped.location["address1"] == "9 Ship Lane"


def test_no_primary_billing_address_means_no_location(seed: MappingCollections) -> None:
    customer = seed_customer()
    customer["addresses"][1]["is_primary_billing"] = False
    mapped = map_customer(customer, seed, MappingContext())
    assert mapped.location == {}
    assert mapped.has_primary_billing is False
    assert map_customer(seed_customer(addresses=None), seed, MappingContext()).location == {}


@pytest.mark.parametrize(("raw", "expected"), [(55260, "55260"), (" 42 ", "42"), ("", None)])
def test_customer_id_is_normalised_to_text(
    seed: MappingCollections, raw: object, expected: str | None
) -> None:
    mapped = map_customer(seed_customer(id=raw), seed, MappingContext())
    assert mapped.customer_id == expected
    assert mapped.attributes.get("external_id") == expected


def test_missing_customer_id(seed: MappingCollections) -> None:
    customer = seed_customer()
    del customer["id"]
    mapped = map_customer(customer, seed, MappingContext())
    assert mapped.customer_id is None
    assert "external_id" not in mapped.attributes


def test_custom_fields_become_directives_or_properties(seed: MappingCollections) -> None:
    customer = seed_customer(
        custom_fields=[
            {"id": "1", "custom_field_name": "LIST_Newsletter", "value": "true"},
            {"id": "2", "custom_field_name": "UCLIST_VIP", "value": "false"},
            {"id": "3", "custom_field_name": "Loyalty Tier", "value": "gold"},
            {"id": "4", "custom_field_name": "Empty", "value": ""},
        ]
    )
    mapped = map_customer(customer, seed, MappingContext())
    assert mapped.directives["LIST_Newsletter"] == "true"
    assert mapped.directives["UCLIST_VIP"] == "false"
    assert mapped.properties["Loyalty Tier"] == "gold"
    assert "Empty" not in mapped.properties


def test_custom_field_values_stay_text_even_when_sent_typed(seed: MappingCollections) -> None:
    customer = seed_customer(
        custom_fields=[
            {"custom_field_name": "Visits", "value": 12},
            {"custom_field_name": "Claustrophobic List", "value": False},
            {"custom_field_name": "Score", "value": 2.5},
            {"custom_field_name": "Tier", "value": "gold"},
            {"custom_field_name": "LIST_Newsletter", "value": True},
        ]
    )
    mapped = map_customer(customer, seed, MappingContext())
    assert mapped.properties["Visits"] == "12"
    assert mapped.properties["Claustrophobic List"] == "false"  # overrides the static True
    assert mapped.properties["Score"] == "2.5"
    assert mapped.properties["Tier"] == "gold"
    assert mapped.directives["LIST_Newsletter"] is True  # a directive: parsed as a flag


def test_a_customer_value_overrides_a_static(seed: MappingCollections) -> None:
    customer = seed_customer(
        custom_fields=[
            {"custom_field_name": "SubscribeProfile", "value": "false"},
            {"custom_field_name": "My Custom", "value": "mine"},
        ]
    )
    added = map_customer(customer, seed, MappingContext())
    assert added.directives["SubscribeProfile"] == "false"
    assert added.properties["My Custom"] == "mine"
    updated = map_customer(customer, seed, LINKED)  # an explicit value applies on update too
    assert updated.directives == {"SubscribeProfile": "false"}


def test_profile_attributes_carry_properties_but_not_location(seed: MappingCollections) -> None:
    mapped = map_customer(seed_customer(), seed, MappingContext())
    attributes = profile_attributes(mapped)
    assert "location" not in attributes
    assert attributes["properties"] == {
        "My Custom": "Example values",
        "Claustrophobic List": True,
    }
    assert attributes["email"] == "ada.lovelace@example.com"
    assert None not in attributes.values()
    mapped.properties.clear()
    assert "properties" not in profile_attributes(mapped)


# --- mapping files --------------------------------------------------------------------------


def load(text: str) -> MappingCollections:
    return load_mapping(textwrap.dedent(text), source_name="my-mapping.yaml")


def error_of(text: str) -> str:
    with pytest.raises(MappingFileError) as caught:
        load(text)
    return str(caught.value)


def test_a_small_file_loads_and_maps() -> None:
    collections = load(
        """
        add:
          - {type: field, source: EmailAddress, destination: Email}
          - type: formula
            formula: Coalesce
            args: [Company, {formula: Trim, args: [LastName]}, {value: none}]
            destination: Organization
        update: []
        """
    )
    mapped = map_customer(seed_customer(company=""), collections, MappingContext())
    assert mapped.attributes == {"email": "ada.lovelace@example.com", "organization": "Lovelace"}
    assert collections.add[1].line == 4


def test_aliases_and_merges_share_mappings() -> None:
    collections = load(
        """
        add:
          - &email {type: field, source: EmailAddress, destination: Email}
          - &base {type: static, value: "1", destination: Tier}
        update:
          - *email
          - {<<: *base, value: "2"}
        """
    )
    mapped = map_customer(seed_customer(), collections, LINKED)
    assert mapped.attributes == {"email": "ada.lovelace@example.com"}
    assert mapped.properties == {"Tier": "2"}


def test_static_values_keep_their_yaml_type() -> None:
    collections = load(
        """
        add:
          - {type: static, value: true, destination: Flag}
          - {type: static, value: False, destination: Disabled}
          - {type: static, value: 42, destination: Count}
          - {type: static, value: -1.5, destination: Ratio}
          - {type: static, value: "true", destination: Quoted Flag}
          - {type: static, value: '7', destination: Quoted Number}
          - {type: static, value: plain text, destination: Text}
          - {type: static, value: null, destination: Nothing}
          - {type: static, value: !!str 10, destination: Tagged}
          - {type: formula, formula: Coalesce, args: [Company, {value: 3}],
             destination: Organization}
        update: []
        """
    )
    mapped = map_customer(seed_customer(company=""), collections, MappingContext())
    assert mapped.properties == {"Flag": True, "Disabled": False, "Count": 42, "Ratio": -1.5,
                                 "Quoted Flag": "true", "Quoted Number": "7",
                                 "Text": "plain text", "Tagged": "10"}
    assert [type(v) for v in mapped.properties.values()] == [
        bool, bool, int, float, str, str, str, str]
    assert mapped.attributes["organization"] == 3  # a formula literal keeps its type too


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("yes", "'yes' is read differently by YAML readers"),
        ("Off", "'Off' is read differently"),
        ("2026-12-01", "'2026-12-01' is read differently"),
        ("010", "'010' is read differently"),
        ("1e3", "'1e3' is read differently"),
        (".inf", "infinite or NaN"),
        ("!!binary aGk=", "a bytes value cannot be sent to Klaviyo"),
    ],
)
def test_ambiguous_or_non_json_static_values_are_refused(value: str, problem: str) -> None:
    message = error_of(f"""
    add:
      - {{type: static, value: {value}, destination: A}}
    update: []
    """)
    assert "my-mapping.yaml line 3: value" in message
    assert problem in message


@pytest.mark.parametrize("written", ["true", "True", '"true"', '"TRUE"'])
def test_directive_statics_work_as_booleans_or_text(written: str) -> None:
    collections = load(f"""
    add:
      - {{type: static, value: {written}, destination: SubscribeProfile}}
    update: []
    """)
    mapped = map_customer(seed_customer(), collections, MappingContext())
    directives, errors = parse_directives(mapped)
    assert errors == [] and directives.subscribe_profile is True


def test_mapping_file_error_is_a_configuration_error() -> None:
    assert issubclass(MappingFileError, ConfigurationError)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            """
            add:
              - {type: field, source: EmailAddress, destination: Email}
              - {type: formula, formula: GetFoo, destination: X}
            update: []
            """,
            "my-mapping.yaml line 4: unknown formula 'GetFoo' (known: Coalesce, ",
        ),
        (
            """
            add: []
            update:
              - {type: lookup, source: EmailAddress, destination: Email}
            """,
            "line 4: unknown type 'lookup'",
        ),
        (
            """
            add:
              - {type: formula, formula: Trim, args: [FirstName, LastName], destination: X}
            update: []
            """,
            "line 3: Trim takes 1 argument(s), 2 given",
        ),
        (
            """
            add:
              - {type: field, source: EmailAdress, destination: Email}
            update: []
            """,
            "line 3: unknown field 'EmailAdress'",
        ),
        (
            """
            add:
              - {type: formula, formula: Lower, args: [Nickname], destination: X}
            update: []
            """,
            "line 3: unknown field 'Nickname'",
        ),
        (
            """
            add:

              - type: formula
                formula: FieldFromFirstMatch
                args: [Addresses, {value: "IsPrimaryBilling == true"}, {value: Zip}]
                destination: Zip
            update: []
            """,
            "line 4: FieldFromFirstMatch: unknown field 'Zip'",
        ),
        (
            """
            add:
              - type: formula
                formula: FirstMatch
                args: [Addresses, {value: "IsBilling == true"}]
                destination: X
            update: []
            """,
            "line 3: FirstMatch: unknown field 'IsBilling'",
        ),
        (
            """
            add:
              - type: formula
                formula: FirstMatch
                args: [Addresses, {value: "IsPrimaryBilling"}]
                destination: X
            update: []
            """,
            "line 3: FirstMatch: a condition must read",
        ),
        (
            """
            add:
              - {type: static, value: x}
            update: []
            """,
            "line 3: missing destination",
        ),
        (
            """
            add:
              - {type: static, value: x, destination: "  "}
            update: []
            """,
            "line 3: empty destination",
        ),
        (
            """
            add:
              - {type: field, source: EmailAddress, destination: Email}
              - {type: field, source: FirstName, destination: FirstName}
              - {type: field, source: CustomerNumber, destination: Email}
            update: []
            """,
            "line 5: duplicate destination 'Email' in 'add' (first at line 3)",
        ),
        (
            """
            add:
              - {type: static, value: person, destination: Type}
            update: []
            """,
            "line 3: 'Type' must be the static value 'profile'",
        ),
        (
            """
            add:
              - {type: static, value: "true", destination: LIST_}
            update: []
            """,
            "line 3: 'LIST_' needs a list name",
        ),
        (
            """
            add:
              - {type: field, source: EmailAddress, destination: email}
            update: []
            """,
            "line 3: unknown destination 'email' (did you mean 'Email'?)",
        ),
        (
            """
            add:
              - {type: static, value: x, destination: A, colour: red}
            update: []
            """,
            "line 3: unknown key 'colour' for a static mapping",
        ),
        (
            """
            add:
              - {type: static, destination: A}
            update: []
            """,
            "line 3: a static mapping needs a 'value'",
        ),
        (
            """
            add: []
            """,
            "line 2: missing the 'update' collection",
        ),
        (
            """
            add: []
            update: []
            extras: []
            """,
            "line 4: unknown section 'extras'",
        ),
        (
            """
            add:
              - {type: static, value: x, destination: A
            update: []
            """,
            "my-mapping.yaml line 4: not valid YAML",
        ),
        ("- just a list\n", "my-mapping.yaml line 1: the file must be a mapping"),
        ("", "my-mapping.yaml line 1: the file must be a mapping"),
    ],
)
def test_mapping_file_errors_name_the_line(text: str, expected: str) -> None:
    assert expected in error_of(text)


def test_the_bundled_default_is_named_in_messages() -> None:
    assert load_mapping().source_name == "<bundled default>"


def test_unsafe_yaml_tags_are_refused() -> None:
    text = """
    add:
      - {type: static, value: !!python/name:os.system x, destination: A}
    update: []
    """
    assert "line 3: value has an unsupported YAML tag" in error_of(text)
