"""The profile step in burst mode, up to the point where the live path would call Klaviyo:
fetch, find the link, map with the right collection, validate, skip an unchanged customer.
What is left is a ``BurstRow`` for the next bulk import job instead of one upsert.
"""

from __future__ import annotations

import json
from typing import Any

from worker.core.burst import BurstRow
from worker.core.errors import ValidationFailed
from worker.core.fingerprint import digest, material
from worker.core.mapping import MappingCollections
from worker.services.sync_service import (
    Ports,
    ProfileSyncResult,
    build_profile_payload,
    prepare_sync,
)

# Stands in for a new profile's id in the fingerprint the next sync will compute; the batch
# puts the real id in once Klaviyo has created the profile.
PROFILE_ID_PLACEHOLDER = "__burst_profile_id__"


def prepare_burst_row(customer_id: str, ports: Ports, mapping: MappingCollections, *,
                      default_region: str, task_id: str, tracking_guid: str | None,
                      force: bool, now: float) -> BurstRow | ProfileSyncResult:
    """The customer's row for a bulk import job, or (unchanged) the live path's result.
    Raises ValidationFailed (and fetch errors) exactly as ``sync_profile`` does."""
    prepared = prepare_sync(customer_id, ports, mapping, default_region, force=force)
    if prepared.unchanged is not None:
        return prepared.unchanged
    customer, linked, source, payload = (prepared.customer, prepared.linked, prepared.source,
                                         prepared.payload)
    mapped = payload.mapped
    next_material = None if linked else _next_material(customer, mapping, default_region)
    return BurstRow(customer_id=customer_id, task_id=task_id, attributes=payload.attributes,
                    collection=mapped.collection, linked_profile_id=linked, link_source=source,
                    fingerprint=payload.fingerprint, next_material=next_material,
                    location_applied=payload.location_applied, tracking_guid=tracking_guid,
                    queued_at=now)


def _next_material(customer: dict[str, Any], mapping: MappingCollections,
                   default_region: str) -> dict[str, Any] | None:
    try:
        linked = build_profile_payload(customer, PROFILE_ID_PLACEHOLDER, mapping,
                                       default_region)
    except ValidationFailed:
        return None  # the update collection refuses it: the next sync will not skip it
    return material(linked.attributes, linked.mapped)


def stamp_after_import(row: BurstRow, profile_id: str) -> str | None:
    """The fingerprint to store once the row reached Klaviyo as ``profile_id``: the one the
    next sync will compute (linked, so with the update collection for a new profile)."""
    if row.linked_profile_id == profile_id:
        return row.fingerprint
    if row.next_material is None:
        return None
    encoded = json.dumps(row.next_material, default=str)
    encoded = encoded.replace(PROFILE_ID_PLACEHOLDER, profile_id)
    return digest(json.loads(encoded))
