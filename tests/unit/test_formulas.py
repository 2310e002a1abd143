"""The formula registry and conditions, exercised with plain customer dicts."""

from __future__ import annotations

from typing import Any

import pytest

from worker.core import reasons
from worker.core.conditions import parse_condition
from worker.core.formulas import (
    FORMULAS,
    Call,
    FieldRef,
    FormulaEnv,
    Literal,
    evaluate,
    formula,
    phone_region,
)
from worker.core.model import MappingContext

ADDRESSES = [
    {
        "address_1": "Ship St",
        "is_primary_billing": False,
        "is_primary_shipping": True,
        "country": "Canada",
        "id": 7,
    },
    {"address_1": "Bill St", "is_primary_billing": "True", "country": "DE", "id": 8},
    {"address_1": "Second Bill St", "is_primary_billing": True, "country": "US", "id": 9},
]


def env(customer: dict[str, Any] | None = None, **context: Any) -> FormulaEnv:
    return FormulaEnv(customer or {}, MappingContext(**context))


def call(name: str, *args: Any, on: FormulaEnv | None = None) -> Any:
    expressions = tuple(a if isinstance(a, (FieldRef, Call)) else Literal(a) for a in args)
    return evaluate(Call(FORMULAS[name], expressions), on or env())


def test_every_formula_has_a_doc_line_and_an_arity() -> None:
    expected = {
        "GetExternalIdAsync",
        "GetKlaviyoFormattedPhoneNumber",
        "FieldFromFirstMatch",
        "FirstMatch",
        "GetValue",
        "GetCustomFieldValue",
        "Coalesce",
        "Trim",
        "Lower",
        "Upper",
    }
    assert expected <= set(FORMULAS)
    for entry in FORMULAS.values():
        assert entry.doc and "\n" not in entry.doc
        assert entry.min_args >= 0


def test_get_external_id_is_the_linked_profile_id() -> None:
    assert call("GetExternalIdAsync", on=env(linked_profile_id="01HXYZ")) == "01HXYZ"
    assert call("GetExternalIdAsync") is None


def test_field_from_first_match_reads_the_first_primary_billing_address() -> None:
    customer = {"addresses": ADDRESSES}
    value = call(
        "FieldFromFirstMatch",
        FieldRef("Addresses"),
        "IsPrimaryBilling == true",
        "Address1",
        on=env(customer),
    )
    assert value == "Bill St"


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("IsPrimaryShipping == true", "Ship St"),
        ("IsPrimaryBilling != true", "Ship St"),
        ("IsPrimaryBilling == TRUE", "Bill St"),
        ("Id == 9", "Second Bill St"),
        ("Id == 9.0", "Second Bill St"),
        ("Country == 'us'", "Second Bill St"),
        ('Country == "Canada"', "Ship St"),
        ("Country == canada", "Ship St"),
        ("Country == Narnia", None),
    ],
)
def test_conditions(condition: str, expected: str | None) -> None:
    customer = {"addresses": ADDRESSES}
    value = call(
        "FieldFromFirstMatch", FieldRef("Addresses"), condition, "Address1", on=env(customer)
    )
    assert value == expected


def test_list_formulas_tolerate_a_missing_list() -> None:
    assert call("FieldFromFirstMatch", FieldRef("Addresses"), "Id == 1", "City") is None
    assert call("FirstMatch", FieldRef("Addresses"), "Id == 1") is None


def test_first_match_nests_inside_get_value() -> None:
    customer = {"addresses": ADDRESSES}
    first = Call(FORMULAS["FirstMatch"], (FieldRef("Addresses"), Literal("Id == 8")))
    assert call("GetValue", first, "Country", on=env(customer)) == "DE"


@pytest.mark.parametrize("text", ["IsPrimaryBilling", "IsPrimaryBilling ==", "== true", "a < b"])
def test_malformed_conditions_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_condition(text)


def test_custom_field_value_by_name_with_or_without_the_list() -> None:
    customer = {"custom_fields": [{"custom_field_name": "Tier", "value": "gold"}]}
    assert call("GetCustomFieldValue", "tier", on=env(customer)) == "gold"
    assert call("GetCustomFieldValue", FieldRef("CustomFields"), "Tier", on=env(customer)) == "gold"
    assert call("GetCustomFieldValue", "Missing", on=env(customer)) is None


def test_coalesce_skips_null_and_blank() -> None:
    assert call("Coalesce", None, "", "  ", "x", "y") == "x"
    assert call("Coalesce", None, "") is None


def test_text_formulas() -> None:
    assert call("Trim", "  a b ") == "a b"
    assert call("Lower", "AbC") == "abc"
    assert call("Upper", "AbC") == "ABC"
    assert call("Trim", None) is None


def test_phone_uses_the_primary_billing_country_by_name() -> None:
    customer = {"addresses": [{"is_primary_billing": True, "country": "United Kingdom"}]}
    on = env(customer)
    assert call("GetKlaviyoFormattedPhoneNumber", "020 7946 0958", on=on) == "+442079460958"
    assert on.problems == []


def test_phone_uses_the_primary_billing_country_by_code() -> None:
    customer = {"addresses": [{"is_primary_billing": True, "country": "de"}]}
    assert call("GetKlaviyoFormattedPhoneNumber", "030 123456", on=env(customer)) == "+4930123456"


def test_phone_falls_back_to_the_default_region() -> None:
    no_billing = {"addresses": [{"is_primary_billing": False, "country": "DE"}]}
    assert phone_region(no_billing, MappingContext(default_region="AU")) == "AU"
    unknown_country = {"addresses": [{"is_primary_billing": True, "country": "Narnia"}]}
    assert phone_region(unknown_country, MappingContext(default_region="GB")) == "GB"
    on = env(no_billing, default_region="AU")
    assert call("GetKlaviyoFormattedPhoneNumber", "02 9876 5432", on=on) == "+61298765432"


def test_invalid_phone_adds_a_problem_without_the_value() -> None:
    on = env()
    assert call("GetKlaviyoFormattedPhoneNumber", "555-12", on=on) is None
    assert [(p.field, p.reason) for p in on.problems] == [("PhoneNumber", reasons.INVALID_PHONE)]
    assert "555" not in on.problems[0].message


def test_empty_phone_adds_no_problem() -> None:
    on = env()
    assert call("GetKlaviyoFormattedPhoneNumber", "", on=on) is None
    assert on.problems == []


def test_a_new_formula_is_one_decorator() -> None:
    try:

        @formula("Reverse", arity=1)
        def reverse(env: FormulaEnv, value: object) -> str:
            """The text backwards."""
            return str(value)[::-1]

        assert FORMULAS["Reverse"].doc == "The text backwards."
        assert call("Reverse", "abc") == "cba"
    finally:
        FORMULAS.pop("Reverse", None)
