"""Suppressions and profile deletion in the Klaviyo sandbox.

``suppress`` is the admin hook tests and the demo use for what a person does in an email
(unsubscribe, mark as spam) or what Klaviyo does on a bounce: it adds a suppression with its
reason and timestamp, as the profile's ``subscriptions`` block shows it. The deletion
endpoint (``request_profile_deletion``) removes every profile holding the identifier, at
once (Klaviyo does it later; the effect is the same): a later import by the same email
creates a new profile.

Handlers run with the state lock held (see KlaviyoSandbox._operation).
"""

from __future__ import annotations

from typing import Any

from sandbox.httpserver import Request, Response
from sandbox.klaviyo_documents import body_data
from sandbox.klaviyo_errors import invalid
from sandbox.klaviyo_state import KlaviyoState, now_iso

SUPPRESSION_REASONS = ("HARD_BOUNCE", "INVALID_EMAIL", "SPAM_COMPLAINT", "UNSUBSCRIBE",
                       "USER_SUPPRESSED")
DELETION_IDENTIFIERS = ("id", "email", "phone_number")


def suppress(state: KlaviyoState, profile_id: str, reason: str = "UNSUBSCRIBE",
             timestamp: str | None = None) -> str:
    """Suppress the profile's email marketing with ``reason``; an UNSUBSCRIBE also sets
    consent UNSUBSCRIBED. Returns the suppression's timestamp."""
    if reason not in SUPPRESSION_REASONS:
        raise ValueError(f"reason must be one of {SUPPRESSION_REASONS}")
    stamp = timestamp or now_iso()
    profile = state.profiles[profile_id]
    if reason == "UNSUBSCRIBE":
        state.record_consent(profile, "email", "marketing", "UNSUBSCRIBED",
                             method="EMAIL_UNSUBSCRIBE")
    record = profile["subscriptions"]["email"]["marketing"]
    record["suppression"] = [s for s in record["suppression"] if s["reason"] != reason]
    record["suppression"].append({"reason": reason, "timestamp": stamp})
    record["can_receive_email_marketing"] = False
    return stamp


def delete_profile(state: KlaviyoState, profile_id: str) -> None:
    record = state.profiles.pop(profile_id, None)
    if record is None:
        return
    record["attributes"].detach()  # its email, phone and external id are free again
    for members in state.members.values():
        members.discard(profile_id)
    state.pending_opt_ins.pop(profile_id, None)


class PrivacyEndpoints:
    def __init__(self, state: KlaviyoState) -> None:
        self.state = state
        # What each accepted deletion job asked for: {"field": ..., "value": ...}.
        self.deletion_jobs: list[dict[str, Any]] = []

    def request_profile_deletion(self, request: Request) -> Response:
        data = body_data(request, "data-privacy-deletion-job")
        attributes = data.get("attributes")
        profile = attributes.get("profile") if isinstance(attributes, dict) else None
        inner = profile.get("data") if isinstance(profile, dict) else None
        if not isinstance(inner, dict) or inner.get("type") != "profile":
            raise invalid("'profile' must name a profile.",
                          pointer="/data/attributes/profile/data")
        given = dict(inner.get("attributes") or {})
        if inner.get("id"):
            given["id"] = inner["id"]
        named = {k: v for k, v in given.items() if k in DELETION_IDENTIFIERS and v}
        if len(named) != 1:
            raise invalid("Exactly one of id, email or phone_number is required.",
                          pointer="/data/attributes/profile/data")
        (field, value), = named.items()
        if field == "id":
            doomed = [value] if value in self.state.profiles else []
        else:
            doomed = [r["id"] for r in self.state.holders(field, value)]
        for profile_id in doomed:
            delete_profile(self.state, profile_id)
        self.deletion_jobs.append({"field": field, "value": value})
        return Response(202, None)
