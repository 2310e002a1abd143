"""Consent endpoints: bulk_subscribe_profiles and bulk_unsubscribe_profiles.

Both validate the whole request before changing anything (one bad profile rejects the batch)
and answer 202 with no body, as the real asynchronous jobs do. Double opt-in is modelled: a
subscribe to a double opt-in list — or without a list on an account whose default opt-in is
double — "sends" a confirmation email and leaves email consent and list membership unchanged
until the person confirms (``KlaviyoSandbox.confirm_opt_in``; never on its own).

Handlers run with the state lock held (see KlaviyoSandbox._operation).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sandbox.httpserver import Request, Response
from sandbox.klaviyo_attributes import check_email, check_phone
from sandbox.klaviyo_documents import body_data
from sandbox.klaviyo_errors import invalid, not_found
from sandbox.klaviyo_state import KlaviyoState

SUBSCRIBE_ATTRIBUTES = frozenset({"email", "phone_number", "subscriptions",
                                  "age_gated_date_of_birth"})
UNSUBSCRIBE_ATTRIBUTES = frozenset({"email", "phone_number", "subscriptions"})
CHANNEL_KINDS = {
    "email": frozenset({"marketing", "open_tracking"}),
    "sms": frozenset({"marketing", "transactional"}),
    "whatsapp": frozenset({"marketing", "transactional", "conversational"}),
    "push": frozenset({"marketing", "tokens"}),
}
MODELLED = {("email", "marketing"), ("sms", "marketing"), ("sms", "transactional")}
MAX_SUBSCRIBE, MAX_UNSUBSCRIBE = 1000, 100


@dataclass
class ConsentChange:
    profile_id: str | None
    email: str | None
    phone_number: str | None
    # (channel, kind) -> consented_at (None when not a historical import)
    consents: dict[tuple[str, str], str | None] = field(default_factory=dict)


class SubscriptionEndpoints:
    def __init__(self, state: KlaviyoState) -> None:
        self.state = state

    def bulk_subscribe_profiles(self, request: Request) -> Response:
        data = body_data(request, "profile-subscription-bulk-create-job")
        attributes = _object(data.get("attributes"), "/data/attributes")
        historical = attributes.get("historical_import") or False
        if not isinstance(historical, bool):
            raise invalid("'historical_import' must be a boolean.",
                          pointer="/data/attributes/historical_import")
        source = attributes.get("custom_source")
        items = _profiles(attributes, MAX_SUBSCRIBE)
        changes = [self._subscribe_change(i, item, historical) for i, item in enumerate(items)]
        list_record = self._list(data)
        double_opt_in = not historical and (
            list_record["opt_in_process"] if list_record else self.state.account_opt_in_process
        ) == "double_opt_in"
        for change in changes:
            profile = self._find_or_create(change)
            subscribed_now = False
            for (channel, kind), consented_at in change.consents.items():
                if (channel, kind) not in MODELLED:
                    continue
                if channel == "email" and double_opt_in:
                    self.state.request_confirmation(
                        profile, list_record["id"] if list_record else None)
                    continue
                self.state.record_consent(profile, channel, kind, "SUBSCRIBED", method="API",
                                          custom_method_detail=source, timestamp=consented_at)
                subscribed_now = True
            if list_record and subscribed_now:
                self.state.members[list_record["id"]].add(profile["id"])
        return Response(202)

    def bulk_unsubscribe_profiles(self, request: Request) -> Response:
        data = body_data(request, "profile-subscription-bulk-delete-job")
        attributes = _object(data.get("attributes"), "/data/attributes")
        items = _profiles(attributes, MAX_UNSUBSCRIBE)
        changes = [_unsubscribe_change(i, item) for i, item in enumerate(items)]
        list_record = self._list(data)
        for change in changes:
            profile = self._find(change)
            if profile is None:
                continue  # nothing to revoke; the real job is asynchronous and reports nothing
            for channel, kind in change.consents:
                if (channel, kind) in MODELLED:
                    self.state.record_consent(profile, channel, kind, "UNSUBSCRIBED",
                                              method="API")
            if list_record:
                self.state.members[list_record["id"]].discard(profile["id"])
        return Response(202)

    # -- helpers ---------------------------------------------------------------------

    def _subscribe_change(self, index: int, item: Any, historical: bool) -> ConsentChange:
        base = f"/data/attributes/profiles/data/{index}"
        change = _change(index, item, SUBSCRIBE_ATTRIBUTES, "SUBSCRIBED")
        profile_id = item.get("id")
        if profile_id is not None and profile_id not in self.state.profiles:
            raise invalid("Profile does not exist.", pointer=f"{base}/id")
        change.profile_id = profile_id
        for (channel, kind), consented_at in change.consents.items():
            pointer = f"{base}/attributes/subscriptions/{channel}/{kind}/consented_at"
            if historical and consented_at is None and kind != "tokens":
                raise invalid("'consented_at' is required when 'historical_import' is true.",
                              pointer=pointer)
            if consented_at is not None and not historical:
                raise invalid("'consented_at' may only be given when 'historical_import' is "
                              "true.", pointer=pointer)
            if consented_at is not None and _parse_past(consented_at) is None:
                raise invalid("'consented_at' must be a date-time in the past.", pointer=pointer)
        return change

    def _list(self, data: dict[str, Any]) -> dict[str, Any] | None:
        relationship = (data.get("relationships") or {}).get("list")
        if relationship is None:
            return None
        list_id = (relationship.get("data") or {}).get("id")
        record = self.state.lists.get(list_id) if isinstance(list_id, str) else None
        if record is None:
            raise not_found(f"A list with id {list_id} does not exist.")
        return record

    def _find(self, change: ConsentChange) -> dict[str, Any] | None:
        if change.profile_id is not None:
            return self.state.profiles[change.profile_id]
        for field_name in ("email", "phone_number"):
            holders = self.state.holders(field_name, getattr(change, field_name))
            if holders:
                return holders[0]
        return None

    def _find_or_create(self, change: ConsentChange) -> dict[str, Any]:
        profile = self._find(change) or self.state.create_profile()
        for field_name in ("email", "phone_number"):
            value = getattr(change, field_name)
            if value and not profile["attributes"][field_name] and not self.state.holders(
                    field_name, value):
                profile["attributes"][field_name] = value
        return profile


def _object(value: Any, pointer: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid("An object is required.", pointer=pointer)
    return value


def _profiles(attributes: dict[str, Any], limit: int) -> list[Any]:
    pointer = "/data/attributes/profiles/data"
    items = _object(attributes.get("profiles"), "/data/attributes/profiles").get("data")
    if not isinstance(items, list) or not items:
        raise invalid("At least one profile is required.", pointer=pointer)
    if len(items) > limit:
        raise invalid(f"At most {limit} profiles may be given per request.", pointer=pointer)
    return items


def _change(index: int, item: Any, allowed: frozenset[str], consent: str) -> ConsentChange:
    """The identifiers and channel consents of one profile entry, validated."""
    base = f"/data/attributes/profiles/data/{index}"
    if not isinstance(item, dict) or item.get("type") != "profile":
        raise invalid("'type' must be 'profile'.", pointer=f"{base}/type")
    attributes = _object(item.get("attributes"), f"{base}/attributes")
    for name in attributes:
        if name not in allowed:
            raise invalid(f"'{name}' is not a valid field for the resource 'profile'.",
                          pointer=f"{base}/attributes/{name}")
    email, phone = attributes.get("email"), attributes.get("phone_number")
    if email is not None:
        check_email(email, f"{base}/attributes/email")
    if phone is not None:
        check_phone(phone, f"{base}/attributes/phone_number")
    if "subscriptions" not in attributes:
        raise invalid("'subscriptions' is a required property",
                      pointer=f"{base}/attributes/subscriptions")
    change = ConsentChange(None, email, phone)
    pointer = f"{base}/attributes/subscriptions"
    for channel, kinds in _object(attributes["subscriptions"], pointer).items():
        if channel not in CHANNEL_KINDS:
            raise invalid(f"'{channel}' is not a valid channel.", pointer=f"{pointer}/{channel}")
        for kind, params in (kinds or {}).items():
            where = f"{pointer}/{channel}/{kind}"
            if kind not in CHANNEL_KINDS[channel]:
                raise invalid(f"'{kind}' is not valid for '{channel}'.", pointer=where)
            if params is None or kind == "tokens":
                continue
            if _object(params, where).get("consent") != consent:
                raise invalid(f"'consent' must be '{consent}'.", pointer=f"{where}/consent")
            change.consents[(channel, kind)] = params.get("consented_at")
    channels = {channel for channel, _ in change.consents}
    if "sms" in channels and not phone:
        raise invalid("'phone_number' must not be empty when the sms channel is included in "
                      "'subscriptions'", pointer=f"{base}/attributes/phone_number")
    if not (email or phone or item.get("id")):
        raise invalid("Either email or phone number is required.", pointer=f"{base}/attributes")
    return change


def _unsubscribe_change(index: int, item: Any) -> ConsentChange:
    if isinstance(item, dict) and "id" in item:
        raise invalid("'id' is not a valid field for this resource.",
                      pointer=f"/data/attributes/profiles/data/{index}/id")
    return _change(index, item, UNSUBSCRIBE_ATTRIBUTES, "UNSUBSCRIBED")


def _parse_past(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment if moment < datetime.now(UTC) else None
