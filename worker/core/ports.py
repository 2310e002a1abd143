"""The small interfaces the core's services talk through. Real implementations live in
``worker.adapters``; tests pass small fakes. Nothing here performs I/O itself."""

from __future__ import annotations

from typing import Any, Protocol

from worker.core.model import ListRef


class CustomerSource(Protocol):
    def get_customer(self, customer_id: str) -> dict[str, Any]: ...


class ExternalIdRegistry(Protocol):
    """iPaaS.com's external-id table for our subscription (system)."""

    def lookup_external_id(self, customer_id: str, table: str = "customer") -> str | None: ...

    def update_external_id(
        self,
        customer_id: str,
        external_id: str,
        table: str = "customer",
        tracking_guid: str | None = None,
    ) -> None: ...


class LinkCache(Protocol):
    """Our own fast copy of customer → Klaviyo profile links."""

    def lookup(self, customer_id: str) -> tuple[str | None, bool]:
        """(profile id, whether iPaaS.com's external-id table is known to hold it too)."""
        ...

    def set(self, customer_id: str, profile_id: str) -> None: ...

    def delete(self, customer_id: str) -> None: ...


class ImportOutcome(Protocol):
    @property
    def profile_id(self) -> str: ...

    @property
    def created(self) -> bool: ...


class ProfileWriter(Protocol):
    """The part of the Klaviyo client the profile and address steps need."""

    def import_profile(
        self, attributes: dict[str, Any], *, profile_id: str | None = None
    ) -> ImportOutcome: ...

    def update_profile(self, profile_id: str, attributes: dict[str, Any]) -> None: ...

    def find_profile_id(self, field: str, value: str) -> str | None: ...


class ListDirectory(Protocol):
    """List name → the Klaviyo list (id and opt-in process), cached; None when no such
    list exists."""

    def lookup(self, name: str) -> ListRef | None: ...


class SubscriptionWriter(Protocol):
    def subscribe(
        self,
        targets: list[Any],
        *,
        list_id: str | None,
        historical_import: bool,
        custom_source: str = ...,
    ) -> None: ...

    def unsubscribe(self, targets: list[Any], *, list_id: str | None) -> None: ...

    def remove_profiles_from_list(self, list_id: str, profile_ids: list[str]) -> None: ...


class FingerprintCache(Protocol):
    """The fingerprint of the last payload that reached Klaviyo, per customer."""

    def get(self, customer_id: str) -> str | None: ...

    def set(self, customer_id: str, value: str) -> None: ...
