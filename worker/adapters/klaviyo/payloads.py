"""JSON:API request bodies and filter expressions for Klaviyo, built by hand from plain data.

Hand-built on purpose: typed SDK models serialise unset fields as ``null``, and Klaviyo
clears a field it receives as ``null``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from worker.core import reasons
from worker.core.errors import FieldError, ValidationFailed
from worker.core.model import SubscriptionTarget

T = TypeVar("T")

PROFILE_LOOKUP_FIELDS = frozenset({"external_id", "email", "phone_number"})


def channel_of(target: SubscriptionTarget) -> str:
    """The email wins the channel: email marketing when the target has an email, SMS
    marketing when it has only a phone number."""
    if target.email:
        return "email"
    if target.phone_number:
        return "sms"
    # Klaviyo needs an email or a phone to (un)subscribe; a profile id alone is not enough.
    raise ValidationFailed([FieldError(
        "email", reasons.MISSING_IDENTIFIER, "subscribing needs an email or a phone number")])


def without_nones(value: Any) -> Any:
    """A deep copy of ``value`` with every ``None`` removed, so nothing is cleared by
    accident. A dict left empty only because its values were all ``None`` goes too."""
    if isinstance(value, dict):
        kept: dict[str, Any] = {}
        for key, item in value.items():
            if item is None:
                continue
            cleaned = without_nones(item)
            if isinstance(item, dict) and item and not cleaned:
                continue
            kept[key] = cleaned
        return kept
    if isinstance(value, list):
        return [without_nones(item) for item in value if item is not None]
    return value


def quoted(value: str) -> str:
    """A filter string literal: double quotes, with backslashes and quotes escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def equals_filter(field: str, value: str) -> str:
    return f"equals({field},{quoted(value)})"


def any_filter(field: str, values: Sequence[str]) -> str:
    """For fields the spec only lets filter by a list of values (a list's ``name``)."""
    return f"any({field},[{','.join(quoted(v) for v in values)}])"


def chunks(items: Sequence[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield list(items[start:start + size])


def unique(items: Sequence[str]) -> list[str]:
    """Drop repeats, keep order: one id twice in a batch is a wasted slot."""
    return list(dict.fromkeys(items))


def profile_document(attributes: dict[str, Any], profile_id: str | None) -> dict[str, Any]:
    data: dict[str, Any] = {"type": "profile", "attributes": without_nones(attributes)}
    if profile_id:
        data["id"] = profile_id
    return {"data": data}


def list_document(name: str, opt_in_process: str | None) -> dict[str, Any]:
    attributes: dict[str, Any] = {"name": name}
    if opt_in_process is not None:
        attributes["opt_in_process"] = opt_in_process
    return {"data": {"type": "list", "attributes": attributes}}


def members_document(profile_ids: Sequence[str]) -> dict[str, Any]:
    return {"data": [{"type": "profile", "id": profile_id} for profile_id in profile_ids]}


def subscribe_document(
    targets: Sequence[SubscriptionTarget],
    *,
    list_id: str | None,
    historical_import: bool,
    custom_source: str,
) -> dict[str, Any]:
    profiles = [_subscribe_profile(t, historical_import) for t in targets]
    data: dict[str, Any] = {
        "type": "profile-subscription-bulk-create-job",
        "attributes": {
            "custom_source": custom_source,
            "historical_import": historical_import,
            "profiles": {"data": profiles},
        },
    }
    _attach_list(data, list_id)
    return {"data": data}


def unsubscribe_document(
    targets: Sequence[SubscriptionTarget], *, list_id: str | None
) -> dict[str, Any]:
    profiles = []
    for target in targets:
        channel = channel_of(target)
        attributes = _identifier_for(target, channel)
        attributes["subscriptions"] = {channel: {"marketing": {"consent": "UNSUBSCRIBED"}}}
        profiles.append({"type": "profile", "attributes": attributes})
    data: dict[str, Any] = {
        "type": "profile-subscription-bulk-delete-job",
        "attributes": {"profiles": {"data": profiles}},
    }
    _attach_list(data, list_id)
    return {"data": data}


def _subscribe_profile(target: SubscriptionTarget, historical_import: bool) -> dict[str, Any]:
    channel = channel_of(target)
    consent: dict[str, Any] = {"consent": "SUBSCRIBED"}
    if historical_import:
        # Klaviyo rejects consented_at without historical_import and requires it with it.
        if not target.consented_at:
            raise ValueError("historical_import needs consented_at on every target")
        consent["consented_at"] = target.consented_at
    attributes = _identifier_for(target, channel)
    attributes["subscriptions"] = {channel: {"marketing": consent}}
    profile: dict[str, Any] = {"type": "profile", "attributes": attributes}
    if target.profile_id:
        profile["id"] = target.profile_id
    return profile


def _identifier_for(target: SubscriptionTarget, channel: str) -> dict[str, Any]:
    # Only the channel's own identifier: a phone sent beside an email would be written to
    # the profile by the subscribe job, outside the upsert that owns profile data.
    if channel == "email":
        return {"email": target.email}
    return {"phone_number": target.phone_number}


def _attach_list(data: dict[str, Any], list_id: str | None) -> None:
    if list_id:
        data["relationships"] = {"list": {"data": {"type": "list", "id": list_id}}}
