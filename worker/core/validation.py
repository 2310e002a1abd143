"""Validation of a mapped customer: every problem at once, by field, with a reason code.

Field names are the mapping destinations (``Email``, ``FirstName``, ``Zip``...) so an operator
can find the mapping to fix. Messages never contain the values themselves.
"""

from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, Schema, fields, validate

from worker.core import reasons
from worker.core.address import country_rules, find_country
from worker.core.errors import FieldError
from worker.core.model import LOCATION_DESTINATIONS, MappedCustomer

MESSAGES = {
    reasons.MISSING_CUSTOMER_ID: "the customer has no iPaaS.com id",
    reasons.MISSING_IDENTIFIER: "an email address or a valid phone number is required",
    reasons.INVALID_EMAIL: "not a valid email address",
    reasons.MISSING_REQUIRED_FIELD: "is required",
    reasons.MISSING_PRIMARY_BILLING_ADDRESS: "the customer has no primary billing address",
    reasons.INVALID_COUNTRY: "not a known country",
    reasons.INVALID_REGION: "not a region of the country",
    reasons.INVALID_POSTAL_CODE: "does not fit the country's postal code format",
}
_DESTINATION_OF = {key: destination for destination, key in LOCATION_DESTINATIONS.items()}


def _required(reason: str, **kwargs: Any) -> fields.Raw:
    # Error messages are reason codes, turned into FieldErrors by _field_errors.
    return fields.Raw(required=True, error_messages={"required": reason, "null": reason}, **kwargs)


class ProfileSchema(Schema):
    external_id = _required(reasons.MISSING_CUSTOMER_ID, data_key="ExternalId")
    email = fields.String(
        data_key="Email",
        validate=validate.Email(error=reasons.INVALID_EMAIL),
        error_messages={"invalid": reasons.INVALID_EMAIL},
    )
    first_name = _required(reasons.MISSING_REQUIRED_FIELD, data_key="FirstName")
    last_name = _required(reasons.MISSING_REQUIRED_FIELD, data_key="LastName")


class AddressSchema(Schema):
    class Meta:
        unknown = EXCLUDE  # Address2 and Timezone are optional and need no rule

    address1 = _required(reasons.MISSING_REQUIRED_FIELD, data_key="Address1")
    city = _required(reasons.MISSING_REQUIRED_FIELD, data_key="City")
    region = _required(reasons.MISSING_REQUIRED_FIELD, data_key="Region")
    country = _required(reasons.MISSING_REQUIRED_FIELD, data_key="Country")
    zip = _required(reasons.MISSING_REQUIRED_FIELD, data_key="Zip")


_PROFILE_SCHEMA = ProfileSchema()
_ADDRESS_SCHEMA = AddressSchema()
_PROFILE_ORDER = ("ExternalId", "Email", "PhoneNumber", "FirstName", "LastName")
_ADDRESS_ORDER = ("Addresses", "Address1", "City", "Region", "Country", "Zip")


def validate_profile(mapped: MappedCustomer) -> list[FieldError]:
    """Every problem that stops the profile from being sent, including formula problems."""
    attributes = mapped.attributes
    data = {
        "ExternalId": attributes.get("external_id") if mapped.customer_id else None,
        "Email": attributes.get("email"),
        "FirstName": attributes.get("first_name"),
        "LastName": attributes.get("last_name"),
    }
    errors = _field_errors(_PROFILE_SCHEMA, data) + list(mapped.problems)
    phone_was_invalid = any(p.reason == reasons.INVALID_PHONE for p in mapped.problems)
    if data["Email"] is None and not attributes.get("phone_number") and not phone_was_invalid:
        errors.append(_error("Email", reasons.MISSING_IDENTIFIER))
    return _ordered(errors, _PROFILE_ORDER)


def validate_address(mapped: MappedCustomer) -> tuple[dict[str, Any] | None, list[FieldError]]:
    """The Klaviyo ``location`` for the primary billing address, or every problem with it."""
    if not mapped.has_primary_billing:
        return None, [_error("Addresses", reasons.MISSING_PRIMARY_BILLING_ADDRESS)]
    location = mapped.location
    data = {_DESTINATION_OF[key]: value for key, value in location.items()}
    errors = _field_errors(_ADDRESS_SCHEMA, data)
    country = find_country(str(location["country"])) if "country" in location else None
    if "country" in location and country is None:
        errors.append(_error("Country", reasons.INVALID_COUNTRY))
    if country is not None:
        rules = country_rules(country.alpha_2)
        if "region" in location and not rules.region_is_valid(str(location["region"])):
            errors.append(_error("Region", reasons.INVALID_REGION))
        if "zip" in location and not rules.postal_code_is_valid(str(location["zip"])):
            errors.append(_error("Zip", reasons.INVALID_POSTAL_CODE))
    if errors or country is None:
        return None, _ordered(errors, _ADDRESS_ORDER)
    return _klaviyo_location(location, country.name), []


def _klaviyo_location(location: dict[str, Any], country_name: str) -> dict[str, Any]:
    result: dict[str, Any] = {"address1": location["address1"]}
    if location.get("address2") is not None:
        result["address2"] = location["address2"]
    result["city"] = location["city"]
    result["region"] = location["region"]
    result["zip"] = str(location["zip"]).strip()
    result["country"] = country_name
    if location.get("timezone") is not None:
        result["timezone"] = location["timezone"]
    return result


def _field_errors(schema: Schema, data: dict[str, Any]) -> list[FieldError]:
    present = {key: value for key, value in data.items() if value is not None}
    found = schema.validate(present)
    return [
        _error(name, reason)
        for name, codes in found.items()
        for reason in (codes if isinstance(codes, list) else [codes])
    ]


def _error(field_name: str, reason: str) -> FieldError:
    return FieldError(field_name, reason, MESSAGES.get(reason, reason))


def _ordered(errors: list[FieldError], order: tuple[str, ...]) -> list[FieldError]:
    rank = {name: index for index, name in enumerate(order)}
    return sorted(errors, key=lambda error: rank.get(error.field, len(order)))
