"""Consent back to iPaaS.com: which Klaviyo profiles opted out, what the customer's
``SubscribeProfile`` field becomes, and how far a pass may move its watermark. Pure.

A pass lists profiles whose email suppression timestamp is greater than the watermark,
sorted by it. The watermark only ever moves to a timestamp every profile of which was
handled: profiles sharing the last timestamp seen stay "open" (their ids are remembered), so
a suppression recorded later within that same timestamp is still found, and a pass that
stops (a crash, the end of its time slice) resumes without handling anyone twice.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from worker.core.directives import parse_flag
from worker.core.model import SUBSCRIBE_DIRECTIVE

SUPPRESSION_TIMESTAMP = "subscriptions.email.marketing.suppression.timestamp"
UNSUBSCRIBED = "UNSUBSCRIBED"

# Outcomes of one profile, as counted in summaries, metrics and history.
WRITTEN_BACK = "written_back"
ALREADY_FALSE = "already_false"
UNLINKED = "unlinked"
NOT_OPTED_OUT = "not_opted_out"  # listed, but subscribed again since
DELETED = "deleted"  # the customer is tombstoned, or gone from iPaaS.com
FAILED = "failed"
OUTCOMES = (WRITTEN_BACK, ALREADY_FALSE, UNLINKED, NOT_OPTED_OUT, DELETED, FAILED)


def filter_time(moment: datetime) -> str:
    """A datetime as Klaviyo's filter grammar takes it: unquoted ISO 8601 in UTC with a
    ``Z`` (no ``+``, which a careless encoder turns into a space)."""
    utc = moment.astimezone(UTC)
    text = utc.isoformat(timespec="microseconds").replace("+00:00", "Z")
    return text.replace(".000000Z", "Z")


def suppressed_since_filter(watermark: datetime) -> str:
    return f"greater-than({SUPPRESSION_TIMESTAMP},{filter_time(watermark)})"


def parse_timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _email_marketing(profile: dict[str, Any]) -> dict[str, Any]:
    attributes = profile.get("attributes")
    subscriptions = attributes.get("subscriptions") if isinstance(attributes, dict) else None
    email = subscriptions.get("email") if isinstance(subscriptions, dict) else None
    marketing = email.get("marketing") if isinstance(email, dict) else None
    return marketing if isinstance(marketing, dict) else {}


def suppression_time(profile: dict[str, Any]) -> datetime | None:
    """The latest email suppression's timestamp: what the pass sorts and filters on."""
    found = [parse_timestamp(s.get("timestamp"))
             for s in _email_marketing(profile).get("suppression") or []
             if isinstance(s, dict)]
    stamps = [s for s in found if s is not None]
    return max(stamps) if stamps else None


def opted_out(profile: dict[str, Any]) -> bool:
    """Email marketing consent UNSUBSCRIBED, or any suppression (spam complaint, bounce,
    invalid email, manual suppression): the person must not be subscribed by a later sync."""
    marketing = _email_marketing(profile)
    return marketing.get("consent") == UNSUBSCRIBED or bool(marketing.get("suppression"))


def subscribe_field(customer: dict[str, Any]) -> bool | None:
    """The customer's SubscribeProfile value as a sync reads it (None: absent or unclear)."""
    for entry in customer.get("custom_fields") or []:
        if isinstance(entry, dict) and entry.get("custom_field_name") == SUBSCRIBE_DIRECTIVE:
            return parse_flag(entry.get("value"))
    return None


def with_subscribe_false(customer: dict[str, Any]) -> dict[str, Any]:
    """The customer as read, with its SubscribeProfile custom field "false" (changed, or
    added when missing). Every other field is sent back as it came."""
    updated = copy.deepcopy(customer)
    fields = updated.get("custom_fields")
    if not isinstance(fields, list):
        fields = []
    for entry in fields:
        if isinstance(entry, dict) and entry.get("custom_field_name") == SUBSCRIBE_DIRECTIVE:
            entry["value"] = "false"
            break
    else:
        fields.append({"custom_field_name": SUBSCRIBE_DIRECTIVE, "value": "false"})
    updated["custom_fields"] = fields
    return updated


@dataclass
class ConsentCursor:
    """Where a consent pass stands: the watermark (every profile suppressed at or before it
    was handled) and the ids handled at the open timestamp after it."""

    watermark: datetime
    open_at: datetime | None = None
    open_ids: set[str] = field(default_factory=set)

    def handled(self, profile_id: str) -> bool:
        return profile_id in self.open_ids

    def done(self, profile_id: str, at: datetime) -> None:
        """``profile_id``, suppressed at ``at``, is fully handled. Profiles come sorted by
        ``at``: a later timestamp closes the open one, and the watermark moves to it."""
        if self.open_at is not None and at > self.open_at:
            self.watermark = max(self.watermark, self.open_at)
            self.open_ids = set()
        if self.open_at is None or at >= self.open_at:
            self.open_at = at
        self.open_ids.add(profile_id)

    def as_dict(self) -> dict[str, Any]:
        return {"watermark": self.watermark.isoformat(),
                "open_at": self.open_at.isoformat() if self.open_at else None,
                "open_ids": sorted(self.open_ids)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConsentCursor | None:
        watermark = parse_timestamp(data.get("watermark"))
        if watermark is None:
            return None
        ids = data.get("open_ids")
        return cls(watermark, parse_timestamp(data.get("open_at")),
                   {str(i) for i in ids} if isinstance(ids, list) else set())
