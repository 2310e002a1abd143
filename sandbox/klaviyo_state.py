"""What the Klaviyo sandbox remembers: profiles, lists, list membership, consent and the
double opt-in emails it "sent". Handlers and tests share it; every access holds ``lock``.
"""

from __future__ import annotations

import base64
import copy
import functools
import random
import string
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from sandbox.klaviyo_identity_index import IDENTIFIERS as IDENTIFIERS  # re-exported
from sandbox.klaviyo_identity_index import IdentityIndex, ProfileRecord, candidates

# Order used to name "the" duplicate when identifiers point at several profiles.
DUPLICATE_PRIORITY = ("email", "external_id", "phone_number")
SCALAR_FIELDS = ("email", "phone_number", "external_id", "first_name", "last_name",
                 "organization", "locale", "title", "image")
LOCATION_FIELDS = ("address1", "address2", "city", "country", "latitude", "longitude",
                   "region", "zip", "timezone", "ip")
CONSENT_STATES = ("SUBSCRIBED", "UNSUBSCRIBED", "NEVER_SUBSCRIBED")
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# base64's RFC 4648 alphabet mapped onto Crockford's: b32encode then does the encoding in C,
# which matters when a bulk import creates 10,000 profiles at once.
_TO_CROCKFORD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _CROCKFORD)


@functools.lru_cache(maxsize=4)
def _time_part(millis: int) -> str:
    return "".join(_CROCKFORD[(millis >> (5 * i)) & 31] for i in reversed(range(10)))


def new_profile_id(rng: random.Random) -> str:
    """26 characters like Klaviyo's ULIDs: 10 of time, 16 (80 bits) of randomness."""
    randomness = base64.b32encode(rng.getrandbits(80).to_bytes(10, "big")).decode()
    return _time_part(int(time.time() * 1000)) + randomness.translate(_TO_CROCKFORD)


def new_list_id(rng: random.Random) -> str:
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(6))


def _channel_consent(receive_flag: str) -> dict[str, Any]:
    return {receive_flag: False, "consent": "NEVER_SUBSCRIBED", "consent_timestamp": None,
            "last_updated": None, "method": None, "method_detail": None}


def new_subscriptions() -> dict[str, Any]:
    email = _channel_consent("can_receive_email_marketing")
    email.update({"custom_method_detail": None, "double_optin": None,
                  "suppression": [], "list_suppressions": []})
    return {
        "email": {"marketing": email},
        "sms": {"marketing": _channel_consent("can_receive_sms_marketing"),
                "transactional": _channel_consent("can_receive_sms_transactional")},
    }


class KlaviyoState:
    def __init__(self, seed: int | None = None) -> None:
        self.lock = threading.RLock()
        self._rng = random.Random(seed)
        self.identity_index = IdentityIndex()
        self.clear()

    def clear(self) -> None:
        with self.lock:
            self.profiles: dict[str, dict[str, Any]] = {}  # insertion order = creation order
            self.lists: dict[str, dict[str, Any]] = {}
            self.members: dict[str, set[str]] = {}
            # The account's default opt-in: it applies to a subscribe job without a list.
            self.account_opt_in_process = "single_opt_in"
            self.consent_emails: list[dict[str, str | None]] = []
            # profile id -> what its unconfirmed double opt-in emails asked for: list ids,
            # None for email consent asked without a list.
            self.pending_opt_ins: dict[str, set[str | None]] = {}
            self.call_counts: Counter[str] = Counter()
            self.bulk_import_jobs: dict[str, Any] = {}  # id -> klaviyo_import_jobs.ImportJob
            self.identity_index.clear()

    # -- profiles --------------------------------------------------------------------

    def create_profile(self) -> dict[str, Any]:
        """An empty profile record; the caller fills in attributes before releasing the lock."""
        profile_id = new_profile_id(self._rng)
        stamp = now_iso()
        attributes: dict[str, Any] = dict.fromkeys(SCALAR_FIELDS)
        attributes.update({"location": dict.fromkeys(LOCATION_FIELDS), "properties": {},
                           "created": stamp, "updated": stamp})
        self.identity_index.register(profile_id)
        record = ProfileRecord(self.identity_index, profile_id, attributes, new_subscriptions())
        self.profiles[profile_id] = record
        return record

    def new_job_id(self) -> str:
        """Klaviyo's job ids look like its profile ids."""
        return new_profile_id(self._rng)

    def holders(self, field: str, value: Any) -> list[dict[str, Any]]:
        """Profiles whose ``field`` equals ``value``, oldest first."""
        if value is None:
            return []
        if field in IDENTIFIERS:
            return [self.profiles[pid] for pid in self.identity_index.ids(field, value)]
        return [p for p in self.profiles.values() if p["attributes"].get(field) == value]

    def resolve(self, identifiers: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """identifier name -> the profile holding the sent value, for those that match
        (profile-import's identity resolution)."""
        found: dict[str, dict[str, Any]] = {}
        for field in ("external_id", "email", "phone_number"):
            holders = self.holders(field, identifiers.get(field))
            if holders:
                found[field] = holders[0]
        return found

    def first_holder(self, identifiers: dict[str, Any], *, excluding: str | None = None
                     ) -> dict[str, Any] | None:
        """The profile (other than ``excluding``) holding one of ``identifiers``, by priority."""
        for field in DUPLICATE_PRIORITY:
            for profile in self.holders(field, identifiers.get(field)):
                if profile["id"] != excluding:
                    return profile
        return None

    def record_consent(self, profile: dict[str, Any], channel: str, kind: str, consent: str, *,
                       method: str | None = None, method_detail: str | None = None,
                       custom_method_detail: str | None = None,
                       timestamp: str | None = None) -> None:
        record = profile["subscriptions"][channel][kind]
        stamp = now_iso()
        record.update({"consent": consent, "consent_timestamp": timestamp or stamp,
                       "last_updated": stamp, "method": method, "method_detail": method_detail})
        if channel == "email":
            record["custom_method_detail"] = custom_method_detail
            record["double_optin"] = False if consent == "SUBSCRIBED" else None
            self._update_suppressions(record, consent, stamp)
        receive_flag = next(k for k in record if k.startswith("can_receive"))
        record[receive_flag] = consent == "SUBSCRIBED" and not record.get("suppression")

    def request_confirmation(self, profile: dict[str, Any], list_id: str | None) -> None:
        """A double opt-in subscribe: "send" the confirmation email and leave email consent
        (and the list's membership) as they are until the person confirms. Without a list,
        a profile whose email consent is already SUBSCRIBED has nothing to confirm."""
        consent = profile["subscriptions"]["email"]["marketing"]["consent"]
        if list_id is None and consent == "SUBSCRIBED":
            return
        self.consent_emails.append({"profile_id": profile["id"], "list_id": list_id})
        self.pending_opt_ins.setdefault(profile["id"], set()).add(list_id)

    def confirm_opt_in(self, profile_id: str) -> int:
        """The person clicks the confirmation link: email consent becomes SUBSCRIBED and every
        list that was waiting for it gains the profile. Returns how many requests it settled."""
        pending = self.pending_opt_ins.pop(profile_id, set())
        if not pending:
            return 0
        profile = self.profiles[profile_id]
        self.record_consent(profile, "email", "marketing", "SUBSCRIBED", method="DOUBLE_OPT_IN")
        profile["subscriptions"]["email"]["marketing"]["double_optin"] = True
        for list_id in pending:
            if list_id is not None and list_id in self.members:
                self.members[list_id].add(profile_id)
        return len(pending)

    @staticmethod
    def _update_suppressions(record: dict[str, Any], consent: str, stamp: str) -> None:
        if consent == "SUBSCRIBED":
            # The subscribe endpoint lifts these suppressions (spec, bulk_subscribe_profiles).
            record["suppression"] = [
                s for s in record["suppression"]
                if s["reason"] not in ("UNSUBSCRIBE", "SPAM_REPORT", "USER_SUPPRESSED")
            ]
        elif consent == "UNSUBSCRIBED":
            record["suppression"] = [{"reason": "UNSUBSCRIBE", "timestamp": stamp}]

    # -- lists -----------------------------------------------------------------------

    def create_list(self, name: str, opt_in_process: str | None) -> dict[str, Any]:
        list_id = new_list_id(self._rng)
        while list_id in self.lists:
            list_id = new_list_id(self._rng)
        stamp = now_iso()
        record = {"id": list_id, "name": name,
                  "opt_in_process": opt_in_process or self.account_opt_in_process,
                  "created": stamp, "updated": stamp}
        self.lists[list_id] = record
        self.members[list_id] = set()
        return record

    # -- read side for tests (copies, so callers cannot change state by accident) ----------

    def profile_copy(self, profile_id: str) -> dict[str, Any] | None:
        with self.lock:
            record = self.profiles.get(profile_id)
            return copy.deepcopy(record) if record else None

    def matching_profiles(self, criteria: dict[str, Any]) -> list[dict[str, Any]]:
        with self.lock:
            ids = candidates(self.identity_index, criteria)
            pool = self.profiles.values() if ids is None else [self.profiles[i] for i in ids]
            return [copy.deepcopy(p) for p in pool
                    if all(p["attributes"].get(k) == v for k, v in criteria.items())]

    def members_of(self, list_name: str) -> set[str]:
        with self.lock:
            ids = [lid for lid, record in self.lists.items() if record["name"] == list_name]
            if not ids:
                raise KeyError(f"no list named {list_name!r}")
            return set().union(*(self.members[lid] for lid in ids))
