"""The three steps over fakes: resolution order, conflicts, write-back, subscriptions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from sandbox.samples import customer
from tests.unit.fakes import (
    FakeCustomers,
    FakeExternalIds,
    FakeKlaviyo,
    FakeLinks,
    FakeLists,
    FakeSubscriptions,
)
from worker.core import reasons
from worker.core.errors import FinalError, NotFoundError, ValidationFailed
from worker.core.mapping import load_mapping
from worker.core.model import ADD, UPDATE
from worker.services.subscription_step import sync_subscriptions
from worker.services.sync_service import (
    IPAAS,
    KLAVIYO,
    LINK_STORE,
    Ports,
    sync_address,
    sync_profile,
)

MAPPING = load_mapping(None)
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def make_ports(*records: dict[str, Any], **kw: Any) -> Ports:
    return Ports(
        customers=FakeCustomers({str(r["id"]): r for r in records}),
        external_ids=kw.get("external_ids", FakeExternalIds()),
        links=kw.get("links", FakeLinks()),
        profiles=kw.get("profiles", FakeKlaviyo()),
        lists=kw.get("lists", FakeLists({"Sms Subscribers": "L1", "Newsletter": "L2"})),
        subscriptions=FakeSubscriptions(),
    )


def run(ports: Ports, cid: str = "1") -> Any:
    return sync_profile(cid, ports, MAPPING, default_region="US")


def test_new_customer_is_created_in_one_call_and_linked_both_ways() -> None:
    ports = make_ports(customer(1, "A", "B", "a@example.com", "2015550101"))
    result = run(ports)
    assert result.created and result.collection == ADD and result.linked_by == KLAVIYO
    assert ports.profiles.calls == [("import", None)]  # type: ignore[attr-defined]
    assert ports.links.get("1") == result.profile_id
    assert ports.external_ids.writes == [("1", result.profile_id)]  # type: ignore[attr-defined]


def test_linked_customer_uses_update_collection_and_sends_the_id() -> None:
    klaviyo = FakeKlaviyo({"P9": {"email": "a@example.com"}})
    ports = make_ports(customer(1, "A", "B", "a@example.com", None),
                       links=FakeLinks({"1": "P9"}), profiles=klaviyo)
    result = run(ports)
    assert (result.profile_id, result.collection, result.linked_by) == ("P9", UPDATE, LINK_STORE)
    assert klaviyo.calls == [("import", "P9")]
    assert ports.external_ids.writes == []  # type: ignore[attr-defined]


def test_link_found_in_ipaas_is_cached_without_writing_back() -> None:
    klaviyo = FakeKlaviyo({"P7": {"email": "a@example.com"}})
    external = FakeExternalIds({"1": "P7"})
    ports = make_ports(customer(1, "A", "B", "a@example.com", None), profiles=klaviyo,
                       external_ids=external)
    result = run(ports)
    assert result.linked_by == IPAAS and ports.links.get("1") == "P7"
    assert external.writes == []


def test_stale_link_falls_back_to_identity_resolution() -> None:
    klaviyo = FakeKlaviyo({"P2": {"email": "a@example.com"}})
    ports = make_ports(customer(1, "A", "B", "a@example.com", None),
                       links=FakeLinks({"1": "GONE"}), profiles=klaviyo)
    result = run(ports)
    assert result.profile_id == "P2"
    assert klaviyo.calls == [("import", "GONE"), ("import", None)]
    assert ports.links.get("1") == "P2"


@pytest.mark.parametrize("without_id", [False, True])
def test_conflicting_identifiers_resolve_to_the_reported_or_looked_up_profile(
    without_id: bool,
) -> None:
    klaviyo = FakeKlaviyo(
        {"P1": {"email": "a@example.com"}, "P2": {"phone_number": "+12015550101"}},
        conflicts_without_id=without_id,
    )
    ports = make_ports(customer(1, "A", "B", "a@example.com", "2015550101"), profiles=klaviyo)
    with pytest.raises(FinalError) as caught:
        run(ports)
    # Email and phone belong to two different people: a person has to decide.
    assert caught.value.reason == reasons.IDENTIFIER_CONFLICT
    assert len(klaviyo.profiles) == 2


def test_duplicate_resolved_through_reported_id() -> None:
    klaviyo = FakeKlaviyo({"P1": {"email": "a@example.com"}})
    ports = make_ports(customer(1, "A", "B", "a@example.com", None),
                       links=FakeLinks({"1": "P5"}), profiles=klaviyo)
    klaviyo.profiles["P5"] = {"email": "old@example.com"}
    result = run(ports)  # P5 is linked but the email now belongs to P1
    assert result.profile_id == "P1"
    assert klaviyo.calls[:2] == [("import", "P5"), ("import", "P1")]


def test_unknown_customer_and_invalid_data_raise_final_errors() -> None:
    with pytest.raises(NotFoundError):
        run(make_ports())
    with pytest.raises(ValidationFailed) as caught:
        run(make_ports(customer(1, "A", "B", None, None)))
    assert caught.value.reason == reasons.MISSING_IDENTIFIER


def test_address_step_patches_location_or_rejects() -> None:
    klaviyo = FakeKlaviyo({"P1": {}})
    good = make_ports(customer(1, "A", "B", "a@example.com", None), profiles=klaviyo)
    location = sync_address("1", "P1", ADD, good, MAPPING, default_region="US")
    assert klaviyo.profiles["P1"]["location"] == location
    assert location["country"] == "United States"
    bad = customer(2, "A", "B", "a@example.com", None, addresses=[])
    with pytest.raises(ValidationFailed) as caught:
        sync_address("2", "P1", ADD, make_ports(bad), MAPPING, default_region="US")
    assert caught.value.reason == reasons.MISSING_PRIMARY_BILLING_ADDRESS


def test_default_mapping_with_a_double_opt_in_list_sends_consent_without_a_list() -> None:
    # The seed's account: "Sms Subscribers" is double opt-in, so joining it gives no consent
    # until the person confirms; SubscribeProfile gets its own job, without a list.
    lists = FakeLists({"Sms Subscribers": "L1"}, {"Sms Subscribers": "double_opt_in"})
    ports = make_ports(customer(1, "A", "B", "a@example.com", None), lists=lists)
    sync_subscriptions("1", "P1", ADD, ports, MAPPING, default_region="US", now=NOW)
    calls = ports.subscriptions.calls  # type: ignore[attr-defined]
    assert [(c[0], c[1], c[2]) for c in calls] == [("subscribe", "L1", False),
                                                  ("subscribe", None, False)]
    assert all(c[3][0].email == "a@example.com" and c[3][0].profile_id == "P1" for c in calls)


def test_default_mapping_with_a_single_opt_in_list_is_one_job() -> None:
    lists = FakeLists({"Sms Subscribers": "L1"}, {"Sms Subscribers": "single_opt_in"})
    ports = make_ports(customer(1, "A", "B", "a@example.com", None), lists=lists)
    sync_subscriptions("1", "P1", ADD, ports, MAPPING, default_region="US", now=NOW)
    calls = ports.subscriptions.calls  # type: ignore[attr-defined]
    assert [(c[0], c[1], c[2]) for c in calls] == [("subscribe", "L1", False)]


def test_a_list_whose_opt_in_is_unknown_does_not_stand_in_for_consent() -> None:
    ports = make_ports(customer(1, "A", "B", "a@example.com", None))  # no opt-in reported
    sync_subscriptions("1", "P1", ADD, ports, MAPPING, default_region="US", now=NOW)
    calls = ports.subscriptions.calls  # type: ignore[attr-defined]
    assert [(c[0], c[1]) for c in calls] == [("subscribe", "L1"), ("subscribe", None)]


def test_update_collection_sends_no_consent_calls() -> None:
    ports = make_ports(customer(1, "A", "B", "a@example.com", None))
    sync_subscriptions("1", "P1", UPDATE, ports, MAPPING, default_region="US", now=NOW)
    assert ports.subscriptions.calls == []  # type: ignore[attr-defined]


def test_uclist_is_a_historical_import_with_past_consent_time() -> None:
    record = customer(1, "A", "B", "a@example.com", None,
                      custom_fields={"UCLIST_Newsletter": "TRUE"})
    ports = make_ports(record)
    sync_subscriptions("1", "P1", UPDATE, ports, MAPPING, default_region="US", now=NOW)
    (kind, list_id, historical, targets), = ports.subscriptions.calls  # type: ignore[attr-defined]
    assert (kind, list_id, historical) == ("subscribe", "L2", True)
    assert targets[0].consented_at < NOW.isoformat()


def test_unknown_list_and_bad_flag_reject_the_step() -> None:
    unknown = customer(1, "A", "B", "a@example.com", None, custom_fields={"LIST_Nope": "true"})
    with pytest.raises(FinalError) as caught:
        sync_subscriptions("1", "P1", UPDATE, make_ports(unknown), MAPPING,
                           default_region="US", now=NOW)
    assert caught.value.reason == reasons.UNKNOWN_LIST
    assert caught.value.errors[0].field == "LIST_Nope"
    flag = customer(2, "A", "B", "a@example.com", None, custom_fields={"SubscribeProfile": "yes"})
    with pytest.raises(ValidationFailed) as caught_flag:
        sync_subscriptions("2", "P1", UPDATE, make_ports(flag), MAPPING,
                           default_region="US", now=NOW)
    assert caught_flag.value.reason == reasons.INVALID_FLAG


def test_unconfirmed_link_from_a_backfill_is_written_back_then_confirmed() -> None:
    klaviyo = FakeKlaviyo({"P3": {"email": "a@example.com"}})
    links = FakeLinks({"1": "P3"}, unconfirmed={"1"})
    ports = make_ports(customer(1, "A", "B", "a@example.com", None), links=links,
                       profiles=klaviyo)
    result = run(ports)
    assert result.profile_id == "P3" and result.collection == UPDATE
    assert ports.external_ids.writes == [("1", "P3")]  # type: ignore[attr-defined]
    assert links.lookup("1") == ("P3", True)


class DictFingerprints(dict):  # type: ignore[type-arg]
    def set(self, key: str, value: str) -> None:
        self[key] = value


def test_valid_address_goes_out_with_the_upsert_in_one_call() -> None:
    ports = make_ports(customer(1, "A", "B", "a@example.com", None))
    result = run(ports)
    assert result.location_applied
    profile = ports.profiles.profiles[result.profile_id]  # type: ignore[attr-defined]
    assert profile["location"]["city"] == "New York"
    assert sync_address("1", result.profile_id, ADD, ports, MAPPING, default_region="US",
                        location_applied=True) is None
    assert ports.profiles.calls == [("import", None)]  # type: ignore[attr-defined]


def test_bad_address_is_left_out_of_the_upsert() -> None:
    record = customer(1, "A", "B", "a@example.com", None, addresses=[])
    ports = make_ports(record)
    result = run(ports)
    assert not result.location_applied
    assert "location" not in ports.profiles.profiles[result.profile_id]  # type: ignore[attr-defined]


def test_identical_update_is_skipped_until_something_changes_or_forced() -> None:
    record = customer(1, "A", "B", "a@example.com", None)
    ports = make_ports(record)
    ports.fingerprints = DictFingerprints()
    first = run(ports)
    assert not first.unchanged
    third = run(ports)  # linked now; the fingerprint was stored for the linked payload
    assert third.unchanged and third.profile_id == first.profile_id
    calls = len(ports.profiles.calls)  # type: ignore[attr-defined]
    forced = sync_profile("1", ports, MAPPING, default_region="US", force=True)
    assert not forced.unchanged

    record["last_name"] = "C"
    assert not run(ports).unchanged
    assert len(ports.profiles.calls) == calls + 2  # type: ignore[attr-defined]



class Died(Exception):
    """Raised by the test's on_upserted: the worker died after the upsert."""


def test_a_sync_that_died_after_the_upsert_runs_again_with_the_same_collection() -> None:
    # Killed before the steps that follow the upsert were sent: nothing may look linked or
    # unchanged, or the new customer's Add-collection lists would never be applied.
    record = customer(1, "A", "B", "a@example.com", None)
    ports = make_ports(record)
    ports.fingerprints = DictFingerprints()
    seen: list[Any] = []

    def dies(result: Any) -> None:
        seen.append(result)
        raise Died()

    with pytest.raises(Died):
        sync_profile("1", ports, MAPPING, default_region="US", on_upserted=dies)
    assert ports.links.lookup("1") == (None, False)
    assert ports.external_ids.lookup_external_id("1") is None
    again = sync_profile("1", ports, MAPPING, default_region="US", on_upserted=seen.append)
    assert not again.unchanged
    assert [r.collection for r in seen] == [ADD, ADD]
    assert seen[0].profile_id == again.profile_id
    assert ports.links.lookup("1")[0] == again.profile_id
    assert run(ports).unchanged  # from here on the fingerprint is stored
