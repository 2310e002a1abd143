"""The backfill plans a customer's subscriptions as the live path does: SubscribeProfile
rides on the seed list only when that list subscribes people at once."""

from __future__ import annotations

from sandbox.samples import customer
from worker.core.backfill import prepare_customer
from worker.core.mapping import load_mapping
from worker.core.subscriptions import SUBSCRIBE, SubscriptionAction

MAPPING = load_mapping(None)
RECORD = customer(7, "Ada", "Lovelace", "ada@example.com", None)


def test_a_double_opt_in_seed_list_gets_a_consent_job_of_its_own() -> None:
    prepared = prepare_customer(RECORD, None, MAPPING, "US",
                                lambda name: False).prepared
    assert prepared is not None
    assert prepared.actions == [SubscriptionAction(SUBSCRIBE, "Sms Subscribers"),
                                SubscriptionAction(SUBSCRIBE)]
    # The typed static reaches the bulk import's attributes as a boolean too.
    assert prepared.attributes["properties"]["Claustrophobic List"] is True


def test_a_single_opt_in_seed_list_carries_the_consent() -> None:
    prepared = prepare_customer(RECORD, None, MAPPING, "US",
                                lambda name: name == "Sms Subscribers").prepared
    assert prepared is not None
    assert prepared.actions == [SubscriptionAction(SUBSCRIBE, "Sms Subscribers")]
