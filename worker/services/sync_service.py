"""The profile and address steps as services over ports (the subscription step is in
``subscription_step``).

Each function fetches what it needs through the ports, runs the pure mapping and
validation, and makes the Klaviyo calls. They raise the worker's errors; deciding between
retry and dead-letter is the task shell's job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from worker.core import reasons
from worker.core.errors import (
    DuplicateProfile,
    FieldError,
    FinalError,
    ProfileNotFound,
    ValidationFailed,
)
from worker.core.fingerprint import fingerprint
from worker.core.mapping import MappingCollections, map_customer, profile_attributes
from worker.core.model import UPDATE, MappedCustomer, MappingContext
from worker.core.ports import (
    CustomerSource,
    ExternalIdRegistry,
    FingerprintCache,
    LinkCache,
    ListDirectory,
    ProfileWriter,
    SubscriptionWriter,
)
from worker.core.validation import validate_address, validate_profile

LINK_STORE = "link_store"
UNCONFIRMED_LINK = "link_store_unconfirmed"
IPAAS = "ipaas"
KLAVIYO = "klaviyo"
_IDENTIFIER_ORDER = ("external_id", "email", "phone_number")


@dataclass
class Ports:
    customers: CustomerSource
    external_ids: ExternalIdRegistry
    links: LinkCache
    profiles: ProfileWriter
    lists: ListDirectory | None = None
    subscriptions: SubscriptionWriter | None = None
    fingerprints: FingerprintCache | None = None


@dataclass
class ProfileSyncResult:
    customer_id: str
    profile_id: str
    created: bool
    collection: str
    linked_by: str  # LINK_STORE | IPAAS | KLAVIYO (Klaviyo matched or created the profile)
    location_applied: bool = False  # the valid billing address went out with the upsert
    unchanged: bool = False  # identical to the last payload that reached Klaviyo: nothing sent


def find_link(customer_id: str, ports: Ports) -> tuple[str | None, str | None]:
    """GetExternalIdAsync's lookup: our link store, then iPaaS.com's external-id table."""
    stored, confirmed = ports.links.lookup(customer_id)
    if stored:
        # An unconfirmed link (stored by a backfill) still has to reach iPaaS.com.
        return stored, LINK_STORE if confirmed else UNCONFIRMED_LINK
    registered = ports.external_ids.lookup_external_id(customer_id)
    if registered:
        return registered, IPAAS
    return None, None


def map_profile(
    customer: dict[str, Any],
    linked_profile_id: str | None,
    mapping: MappingCollections,
    default_region: str,
) -> MappedCustomer:
    """Map and validate the profile step; raise ValidationFailed with every problem."""
    mapped = map_customer(customer, mapping, MappingContext(linked_profile_id, default_region))
    errors = validate_profile(mapped)
    if errors:
        raise ValidationFailed(errors)
    return mapped


@dataclass
class ProfilePayload:
    mapped: MappedCustomer
    attributes: dict[str, Any]  # what profile-import sends, location included when valid
    location_applied: bool
    fingerprint: str


def build_profile_payload(
    customer: dict[str, Any],
    linked_profile_id: str | None,
    mapping: MappingCollections,
    default_region: str,
) -> ProfilePayload:
    """Map and validate a customer and build the upsert payload and its fingerprint.

    Pure; raises ValidationFailed. Reconcile uses it to tell changed customers from
    unchanged ones without a Klaviyo call.
    """
    mapped = map_profile(customer, linked_profile_id, mapping, default_region)
    attributes = profile_attributes(mapped)
    # A valid billing address rides along with the upsert: one Klaviyo call instead of two.
    # A bad one is left out here and rejected by the address step on its own.
    location, _ = validate_address(mapped)
    if location is not None:
        attributes["location"] = location
    return ProfilePayload(mapped, attributes, location is not None,
                          fingerprint(attributes, mapped))


@dataclass(frozen=True)
class PreparedSync:
    """A customer fetched, linked and mapped: its payload, or the result that says nothing
    changed since the last payload that reached Klaviyo."""

    customer: dict[str, Any]
    linked: str | None
    source: str | None
    payload: ProfilePayload
    unchanged: ProfileSyncResult | None


def prepare_sync(customer_id: str, ports: Ports, mapping: MappingCollections,
                 default_region: str, *, force: bool) -> PreparedSync:
    """Fetch, find the link, map and validate (raises as ``sync_profile`` does); an update
    identical to the last one sent is ``unchanged`` unless ``force``. Shared by the live
    path and burst batches."""
    customer = ports.customers.get_customer(customer_id)
    linked, source = find_link(customer_id, ports)
    payload = build_profile_payload(customer, linked, mapping, default_region)
    unchanged = None
    if (not force and linked and source == LINK_STORE and ports.fingerprints is not None
            and ports.fingerprints.get(customer_id) == payload.fingerprint):
        unchanged = ProfileSyncResult(customer_id, linked, False, payload.mapped.collection,
                                      LINK_STORE, location_applied=payload.location_applied,
                                      unchanged=True)
    return PreparedSync(customer, linked, source, payload, unchanged)


def sync_profile(
    customer_id: str,
    ports: Ports,
    mapping: MappingCollections,
    *,
    default_region: str,
    tracking_guid: str | None = None,
    force: bool = False,
    on_upserted: Callable[[ProfileSyncResult], None] | None = None,
) -> ProfileSyncResult:
    """Map, validate, resolve and upsert one customer; skip it when nothing changed.

    ``on_upserted`` runs right after the upsert, before the link is written anywhere: the
    caller sends the steps that follow from it (address, lists) there. A sync that dies
    before they are sent finds no link when it runs again, so it maps with the same
    collection (the Add one for a new customer, whose lists come from it) and sends them
    then; after the link is written it would map with Update. The fingerprint that makes an
    identical update a no-op is stored last, for the same reason."""
    prepared = prepare_sync(customer_id, ports, mapping, default_region, force=force)
    if prepared.unchanged is not None:
        return prepared.unchanged
    customer, linked, source, payload = (prepared.customer, prepared.linked, prepared.source,
                                         prepared.payload)
    mapped = payload.mapped
    outcome_id, created = upsert_profile(payload.attributes, mapped.profile_id, ports)
    result = ProfileSyncResult(
        customer_id=customer_id,
        profile_id=outcome_id,
        created=created,
        collection=mapped.collection,
        linked_by=source if outcome_id == linked and source in (LINK_STORE, IPAAS) else KLAVIYO,
        location_applied=payload.location_applied,
    )
    if on_upserted is not None:
        on_upserted(result)
    if outcome_id != linked or source != LINK_STORE:
        # iPaaS.com first, our cache second: a cached link then always means iPaaS.com has it
        # too, and a failed write-back is retried (the retry finds no cached link, Klaviyo's
        # identity resolution returns the same profile, and the write-back runs again).
        if outcome_id != linked or source != IPAAS:
            ports.external_ids.update_external_id(
                customer_id, outcome_id, tracking_guid=tracking_guid
            )
        ports.links.set(customer_id, outcome_id)
    if ports.fingerprints is not None:
        # Stored as the next sync will compute it: linked, with the update collection.
        stamp = payload.fingerprint
        if outcome_id != linked:
            stamp = build_profile_payload(customer, outcome_id, mapping, default_region).fingerprint
        ports.fingerprints.set(customer_id, stamp)
    return result


def upsert_profile(
    attributes: dict[str, Any], profile_id: str | None, ports: Ports
) -> tuple[str, bool]:
    """One profile-import call in the common case; re-resolve on 404 and 409.

    A 404 for an id we sent means the link is stale (profile deleted or merged) or Klaviyo's
    odd answer to an id whose identifiers belong elsewhere: retry without the id so Klaviyo
    resolves by external_id, email, then phone. A 409 names the profile that holds one of our
    identifiers: update that one. Anything still conflicting is a data problem for a person.
    """
    tried: set[str | None] = set()
    target = profile_id
    for _ in range(4):
        try:
            result = ports.profiles.import_profile(attributes, profile_id=target)
            return result.profile_id, result.created
        except ProfileNotFound:
            tried.add(target)
            if target is None:
                break
            target = None
        except DuplicateProfile as conflict:
            tried.add(target)
            candidate = conflict.duplicate_profile_id or _lookup(attributes, ports)
            if candidate in tried:
                break
            target = candidate
    raise FinalError(
        "identifiers resolve to different Klaviyo profiles",
        reason=reasons.IDENTIFIER_CONFLICT,
        errors=[
            FieldError(
                "identifiers",
                reasons.IDENTIFIER_CONFLICT,
                "email, phone number or external id belong to different Klaviyo profiles",
            )
        ],
    )


def _lookup(attributes: dict[str, Any], ports: Ports) -> str | None:
    for field in _IDENTIFIER_ORDER:
        value = attributes.get(field)
        if value:
            found = ports.profiles.find_profile_id(field, str(value))
            if found:
                return found
    return None


def mapped_for_step(
    customer_id: str,
    profile_id: str,
    collection: str,
    ports: Ports,
    mapping: MappingCollections,
    default_region: str,
) -> MappedCustomer:
    """Map again with the collection the profile step chose (only ids travel the queue)."""
    customer = ports.customers.get_customer(customer_id)
    linked = profile_id if collection == UPDATE else None
    return map_customer(customer, mapping, MappingContext(linked, default_region))


def sync_address(
    customer_id: str,
    profile_id: str,
    collection: str,
    ports: Ports,
    mapping: MappingCollections,
    *,
    default_region: str,
    location_applied: bool = False,
) -> dict[str, Any] | None:
    """The primary billing address becomes the profile's location; returns it.

    When the profile step already sent the (valid) location with its upsert there is nothing
    left to do; otherwise the address is fetched and validated again — a data fix since the
    profile step, or a replay, is applied with its own call, and a bad address is rejected.
    """
    if location_applied:
        return None
    mapped = mapped_for_step(customer_id, profile_id, collection, ports, mapping, default_region)
    location, errors = validate_address(mapped)
    if errors or location is None:
        raise ValidationFailed(errors)
    ports.profiles.update_profile(profile_id, {"location": location})
    return location
