"""A fingerprint of what a sync would send, to skip updates that change nothing.

It covers the profile payload (attributes, properties and location), the directives that
drive the subscription step, the collection and the linked profile id: if any of them
differs, the customer is synced again.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from worker.core.model import MappedCustomer


def fingerprint(attributes: dict[str, Any], mapped: MappedCustomer) -> str:
    return digest(material(attributes, mapped))


def material(attributes: dict[str, Any], mapped: MappedCustomer) -> dict[str, Any]:
    """What the fingerprint covers (burst mode stores it until the profile id is known)."""
    return {
        "attributes": attributes,
        "directives": mapped.directives,
        "collection": mapped.collection,
        "profile_id": mapped.profile_id,
    }


def digest(material: dict[str, Any]) -> str:
    encoded = json.dumps(material, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(encoded.encode()).hexdigest()
