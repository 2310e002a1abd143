"""Plain data that flows through the core. No behaviour beyond small derived views."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from worker.core.errors import FieldError

ADD = "add"
UPDATE = "update"

# Destinations of the mapping collection that are Klaviyo profile attributes, and the
# attribute each one fills. Anything that is neither here, a location destination nor a
# directive becomes a custom profile property.
ATTRIBUTE_DESTINATIONS: dict[str, str] = {
    "Email": "email",
    "PhoneNumber": "phone_number",
    "ExternalId": "external_id",
    "FirstName": "first_name",
    "LastName": "last_name",
    "Organization": "organization",
    "Title": "title",
    "Image": "image",
    "Locale": "locale",
}
LOCATION_DESTINATIONS: dict[str, str] = {
    "Address1": "address1",
    "Address2": "address2",
    "City": "city",
    "Country": "country",
    "Region": "region",
    "Zip": "zip",
    "Timezone": "timezone",
}
# `Id` is the Klaviyo profile id (JSON:API `data.id`); `Type` the JSON:API resource type.
ID_DESTINATION = "Id"
TYPE_DESTINATION = "Type"
SUBSCRIBE_DIRECTIVE = "SubscribeProfile"
LIST_PREFIX = "LIST_"
UCLIST_PREFIX = "UCLIST_"
SINGLE_OPT_IN = "single_opt_in"


def is_directive(destination: str) -> bool:
    return (
        destination == SUBSCRIBE_DIRECTIVE
        or destination.startswith(LIST_PREFIX)
        or destination.startswith(UCLIST_PREFIX)
    )


@dataclass
class MappingContext:
    """What the mapping needs from the outside world, gathered before mapping runs."""

    linked_profile_id: str | None = None  # the answer GetExternalIdAsync gives
    default_region: str = "US"  # phone region when the billing address has no country


@dataclass
class MappedCustomer:
    """A customer after the mapping collection ran, split by where each value goes.

    Only destinations the mapping actually produced are present: a missing key means
    "leave it alone in Klaviyo", never "clear it".
    """

    customer_id: str | None
    collection: str  # ADD or UPDATE
    profile_id: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    location: dict[str, Any] = field(default_factory=dict)
    properties: dict[str, Any] = field(default_factory=dict)
    directives: dict[str, Any] = field(default_factory=dict)  # raw values by destination
    resource_type: str = "profile"
    problems: list[FieldError] = field(default_factory=list)  # raised by formulas
    has_primary_billing: bool = False  # the customer has an address marked primary billing


@dataclass(frozen=True)
class ListDirective:
    name: str
    consented: bool  # True for UCLIST_ (historical import, no consent email)
    member: bool  # True subscribes, False removes from the list


@dataclass(frozen=True)
class ListRef:
    """A Klaviyo list as the subscription step needs it: its id and how it opts people in."""

    id: str
    opt_in_process: str | None = None  # "single_opt_in" | "double_opt_in"; None: not known

    @property
    def subscribes_at_once(self) -> bool:
        """A subscription to this list makes the profile SUBSCRIBED without a confirmation.
        An unknown opt-in process counts as double: consent must not be assumed."""
        return self.opt_in_process == SINGLE_OPT_IN


@dataclass
class Directives:
    """The parsed subscription and list instructions of one customer."""

    subscribe_profile: bool | None = None
    lists: list[ListDirective] = field(default_factory=list)


@dataclass(frozen=True)
class SubscriptionTarget:
    """One profile in a bulk subscribe or unsubscribe job."""

    email: str | None = None
    phone_number: str | None = None
    profile_id: str | None = None  # sent as `id` on subscribe; unsubscribe matches by identifier
    consented_at: str | None = None  # ISO-8601, in the past; only with historical_import
