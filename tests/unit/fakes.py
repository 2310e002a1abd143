"""Small in-memory fakes of the core's ports (worker/core/ports.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from worker.core.errors import DuplicateProfile, NotFoundError, ProfileNotFound
from worker.core.model import ListRef


@dataclass
class FakeCustomers:
    records: dict[str, dict[str, Any]] = field(default_factory=dict)

    def get_customer(self, customer_id: str) -> dict[str, Any]:
        if customer_id not in self.records:
            raise NotFoundError("customer not found")
        return self.records[customer_id]


@dataclass
class FakeExternalIds:
    links: dict[str, str] = field(default_factory=dict)
    writes: list[tuple[str, str]] = field(default_factory=list)

    def lookup_external_id(self, customer_id: str, table: str = "customer") -> str | None:
        return self.links.get(customer_id)

    def update_external_id(self, customer_id: str, external_id: str, table: str = "customer",
                           tracking_guid: str | None = None) -> None:
        self.writes.append((customer_id, external_id))
        self.links[customer_id] = external_id


@dataclass
class FakeLinks:
    links: dict[str, str] = field(default_factory=dict)

    unconfirmed: set[str] = field(default_factory=set)

    def get(self, customer_id: str) -> str | None:
        return self.links.get(customer_id)

    def lookup(self, customer_id: str) -> tuple[str | None, bool]:
        link = self.links.get(customer_id)
        return link, link is not None and customer_id not in self.unconfirmed

    def set(self, customer_id: str, profile_id: str) -> None:
        self.links[customer_id] = profile_id
        self.unconfirmed.discard(customer_id)

    def delete(self, customer_id: str) -> None:
        self.links.pop(customer_id, None)


@dataclass
class Imported:
    profile_id: str
    created: bool


@dataclass
class FakeKlaviyo:
    """Profiles keyed by id with Klaviyo's identity rules, simplified."""

    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    conflicts_without_id: bool = False  # answer 409 without duplicate_profile_id

    def _holder(self, attributes: dict[str, Any], exclude: str | None) -> str | None:
        for pid, profile in self.profiles.items():
            if pid == exclude:
                continue
            for key in ("external_id", "email", "phone_number"):
                if attributes.get(key) and profile.get(key) == attributes[key]:
                    return pid
        return None

    def import_profile(self, attributes: dict[str, Any], *, profile_id: str | None = None
                       ) -> Imported:
        self.calls.append(("import", profile_id))
        if profile_id is not None:
            if profile_id not in self.profiles:
                raise ProfileNotFound("no such profile")
            other = self._holder(attributes, exclude=profile_id)
            if other:
                raise DuplicateProfile(None if self.conflicts_without_id else other)
            self.profiles[profile_id].update(attributes)
            return Imported(profile_id, False)
        holders = {
            pid for pid, p in self.profiles.items()
            for key in ("external_id", "email", "phone_number")
            if attributes.get(key) and p.get(key) == attributes[key]
        }
        if len(holders) > 1:
            raise DuplicateProfile(None if self.conflicts_without_id else sorted(holders)[0])
        if holders:
            pid = holders.pop()
            self.profiles[pid].update(attributes)
            return Imported(pid, False)
        pid = f"P{len(self.profiles) + 1:03d}"
        self.profiles[pid] = dict(attributes)
        return Imported(pid, True)

    def update_profile(self, profile_id: str, attributes: dict[str, Any]) -> None:
        self.calls.append(("update", profile_id))
        self.profiles[profile_id].update(attributes)

    def find_profile_id(self, field_name: str, value: str) -> str | None:
        self.calls.append(("find", field_name))
        for pid, profile in self.profiles.items():
            if profile.get(field_name) == value:
                return pid
        return None


@dataclass
class FakeLists:
    ids: dict[str, str] = field(default_factory=dict)
    opt_in: dict[str, str] = field(default_factory=dict)  # name -> opt-in process; else unknown

    def lookup(self, name: str) -> ListRef | None:
        list_id = self.ids.get(name)
        return ListRef(list_id, self.opt_in.get(name)) if list_id is not None else None


@dataclass
class FakeSubscriptions:
    calls: list[tuple[str, Any]] = field(default_factory=list)

    def subscribe(self, targets: list[Any], *, list_id: str | None, historical_import: bool,
                  custom_source: str = "") -> None:
        self.calls.append(("subscribe", list_id, historical_import, targets))

    def unsubscribe(self, targets: list[Any], *, list_id: str | None) -> None:
        self.calls.append(("unsubscribe", list_id, None, targets))

    def remove_profiles_from_list(self, list_id: str, profile_ids: list[str]) -> None:
        self.calls.append(("remove", list_id, None, profile_ids))
