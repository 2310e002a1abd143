"""Erasure: a customer deleted in iPaaS.com (``customer/deleted``) or forgotten on request
(``ipaas-klaviyo forget``).

The tombstone goes first (whoever asks, at once): from then on no sync, reconcile, replay
or backfill touches the customer. Then, in a worker step retried like any other, the link is
removed from our store (kept on the tombstone as an id, for the deletion request), the
customer's dead letters go, and with KLAVIYO_DELETE_PROFILES=true Klaviyo is asked to delete
the linked profile. Without it the profile stays in Klaviyo, unlinked. History keeps ids only.
"""

from __future__ import annotations

from worker.adapters.klaviyo.consent import KlaviyoConsent
from worker.adapters.stores import FingerprintStore
from worker.adapters.tombstones import FORGET, Tombstones
from worker.bootstrap import Container
from worker.core.errors import StepOutcome

ERASE_STEP = "erase"
# Outcomes of the erase step.
PROFILE_DELETED = "deleted"  # Klaviyo accepted the deletion job
UNLINKED = "unlinked"  # the profile stays in Klaviyo (KLAVIYO_DELETE_PROFILES is off)
NOT_LINKED = "forgotten"  # no profile was linked: the tombstone is all there is to do


def erase_customer(c: Container, customer_id: str, source: str = FORGET) -> StepOutcome:
    """Everything an erasure does after the tombstone; safe to run again (a retry)."""
    tombstones = Tombstones(c.redis)
    tombstones.add(customer_id, source)
    stored = tombstones.get(customer_id)
    profile_id = (c.links.get(customer_id) or (stored.profile_id if stored else None)
                  or c.ipaas.lookup_external_id(customer_id))
    if profile_id:
        # Before the link goes: a retry of the deletion below must still know the profile.
        tombstones.remember_profile(customer_id, profile_id)
    c.links.delete(customer_id)
    FingerprintStore(c.redis).forget(customer_id)
    for entry in c.dead_letters.for_customer(customer_id):
        if entry.get("step") != ERASE_STEP:
            c.dead_letters.remove(str(entry["id"]))
    if not profile_id:
        return StepOutcome(ERASE_STEP, NOT_LINKED)
    if not c.settings.klaviyo_delete_profiles:
        return StepOutcome(ERASE_STEP, UNLINKED, profile_id=profile_id)
    KlaviyoConsent(c.klaviyo).request_deletion(profile_id)
    return StepOutcome(ERASE_STEP, PROFILE_DELETED, profile_id=profile_id)
