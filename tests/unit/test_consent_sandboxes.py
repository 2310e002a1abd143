"""The sandboxes model consent read-back and deletion, driven through our own adapters over
real HTTP: suppressions with reason and timestamp, the suppression-time filter and sort with
subscriptions, deletion jobs, and iPaaS.com's customer update. Every Klaviyo request must
satisfy Klaviyo's OpenAPI spec."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import requests

from sandbox.ipaas_sandbox import IpaasSandbox
from sandbox.klaviyo_sandbox import KlaviyoSandbox
from tests.contract.openapi_contract import violations
from worker.adapters.http import HttpAdapter
from worker.adapters.ipaas import IpaasClient
from worker.adapters.klaviyo.client import KlaviyoClient
from worker.adapters.klaviyo.consent import KlaviyoConsent
from worker.core import consent_back as cb
from worker.core.errors import NotFoundError

KEY = "pk_consent_test"


@pytest.fixture(scope="module")
def running_klaviyo() -> Iterator[KlaviyoSandbox]:
    with KlaviyoSandbox(api_key=KEY) as sandbox:
        yield sandbox


@pytest.fixture
def klaviyo(running_klaviyo: KlaviyoSandbox) -> Iterator[KlaviyoSandbox]:
    running_klaviyo.reset()
    yield running_klaviyo
    assert violations(running_klaviyo.server.requests) == []


@pytest.fixture
def consent(klaviyo: KlaviyoSandbox) -> Iterator[KlaviyoConsent]:
    with requests.Session() as session:
        client = KlaviyoClient(HttpAdapter(session, timeout=10), base_url=klaviyo.url,
                               api_key=KEY, revision="2026-07-15")
        yield KlaviyoConsent(client)


def listed(consent: KlaviyoConsent, since: datetime, page_size: int = 100) -> list[str]:
    return [p["id"] for page in consent.suppressed_since(since, page_size) for p in page]


def test_unsubscribe_hook_adds_a_suppression_the_filter_finds(
        klaviyo: KlaviyoSandbox, consent: KlaviyoConsent) -> None:
    before = datetime.now(UTC) - timedelta(seconds=5)
    quiet = klaviyo.add_profile(email="quiet@example.com")
    gone = klaviyo.add_profile(email="gone@example.com", external_id="101")
    stamp = klaviyo.unsubscribe(gone)
    pages = list(consent.suppressed_since(before))
    assert [p["id"] for page in pages for p in page] == [gone]
    found = pages[0][0]
    assert found["attributes"]["external_id"] == "101"
    marketing = found["attributes"]["subscriptions"]["email"]["marketing"]
    assert marketing["consent"] == "UNSUBSCRIBED"
    assert marketing["suppression"] == [{"reason": "UNSUBSCRIBE", "timestamp": stamp}]
    assert cb.opted_out(found) and quiet not in listed(consent, before)
    # Strictly greater than: a watermark at the suppression's own time lists nothing.
    assert listed(consent, datetime.fromisoformat(stamp)) == []


def test_suppressions_are_sorted_by_time_and_paged(
        klaviyo: KlaviyoSandbox, consent: KlaviyoConsent) -> None:
    base = datetime(2026, 12, 1, tzinfo=UTC)
    ids = [klaviyo.add_profile(email=f"p{n}@example.com") for n in range(5)]
    # Suppressed out of order; the listing comes back oldest first.
    for n, offset in zip(range(5), (4, 2, 0, 3, 1), strict=True):
        klaviyo.suppress(ids[n], "SPAM_COMPLAINT" if n == 1 else "UNSUBSCRIBE",
                         timestamp=(base + timedelta(minutes=offset)).isoformat())
    assert listed(consent, base - timedelta(minutes=1), page_size=2) == [
        ids[2], ids[4], ids[1], ids[3], ids[0]]
    assert listed(consent, base + timedelta(minutes=2)) == [ids[3], ids[0]]
    assert klaviyo.call_counts["get_profiles"] == 3 + 1  # pages of 2, then one page


def test_a_spam_complaint_keeps_its_reason(klaviyo: KlaviyoSandbox,
                                           consent: KlaviyoConsent) -> None:
    profile_id = klaviyo.add_profile(email="spam@example.com")
    klaviyo.suppress(profile_id, "SPAM_COMPLAINT")
    (found,) = [p for page in consent.suppressed_since(datetime(2000, 1, 1, tzinfo=UTC))
                for p in page]
    marketing = found["attributes"]["subscriptions"]["email"]["marketing"]
    assert [s["reason"] for s in marketing["suppression"]] == ["SPAM_COMPLAINT"]
    assert marketing["can_receive_email_marketing"] is False
    assert cb.opted_out(found)


def test_admin_hook_over_http(klaviyo: KlaviyoSandbox) -> None:
    profile_id = klaviyo.add_profile(email="http@example.com")
    answer = requests.post(f"{klaviyo.url}/_sandbox/profiles/{profile_id}/suppressions",
                           json={"reason": "UNSUBSCRIBE"}, timeout=10)
    assert answer.status_code == 201
    assert klaviyo.email_consent(profile_id) == "UNSUBSCRIBED"
    missing = requests.post(f"{klaviyo.url}/_sandbox/profiles/nope/suppressions", timeout=10)
    assert missing.status_code == 404


def test_deletion_job_removes_the_profile_and_frees_its_email(
        klaviyo: KlaviyoSandbox, consent: KlaviyoConsent) -> None:
    profile_id = klaviyo.add_profile(email="erase@example.com")
    consent.request_deletion(profile_id)
    assert klaviyo.profile(profile_id) is None
    assert klaviyo.deletion_jobs == [{"field": "id", "value": profile_id}]
    assert klaviyo.call_counts["request_profile_deletion"] == 1
    # A later import by the same email creates a new profile.
    client = consent.client
    again = client.import_profile({"email": "erase@example.com"})
    assert again.created and again.profile_id != profile_id
    consent.request_deletion(profile_id)  # already gone: accepted, nothing left to delete


@pytest.fixture(scope="module")
def running_ipaas() -> Iterator[IpaasSandbox]:
    with IpaasSandbox(token="tok", system_id="4242") as sandbox:
        yield sandbox


def test_ipaas_customer_update_stores_the_customer(running_ipaas: IpaasSandbox) -> None:
    running_ipaas.reset()
    running_ipaas.put_customer({"id": 55, "email_address": "a@example.com",
                                "custom_fields": [{"id": 3, "custom_field_name":
                                                   "SubscribeProfile", "value": "true"}]})
    with requests.Session() as session:
        client = IpaasClient(HttpAdapter(session, timeout=10), running_ipaas.url, "tok", "4242")
        customer = client.get_customer("55")
        client.update_customer("55", cb.with_subscribe_false(customer))
        stored = client.get_customer("55")
        assert cb.subscribe_field(stored) is False
        assert stored["email_address"] == "a@example.com"
        assert running_ipaas.updates == ["55"]
        with pytest.raises(NotFoundError):
            client.update_customer("56", {"id": 56})
    assert running_ipaas.call_counts["update_customer"] == 2


def test_datetimes_in_filters_are_unquoted_iso_8601() -> None:
    from sandbox.klaviyo_errors import ApiError
    from sandbox.klaviyo_filters import PROFILE_FILTERS, parse_filter
    from tests.contract.openapi_contract import _operation, filter_problem

    allowed = (_operation("GET", "/api/profiles") or {})["x-klaviyo-filters"]
    good = cb.suppressed_since_filter(datetime(2026, 12, 1, tzinfo=UTC))
    assert filter_problem(good, allowed) is None
    (condition,) = parse_filter(good, PROFILE_FILTERS)
    assert condition.operator == "greater-than"
    field = cb.SUPPRESSION_TIMESTAMP
    for bad in (f'greater-than({field},"2026-12-01T00:00:00Z")',  # quoted
                f"greater-than({field},2026-12-01)",  # a date, no time
                f"greater-than({field},2026-12-01T00:00:00 00:00)",  # "+" decoded to a space
                f"equals({field},2026-12-01T00:00:00Z)"):  # not an operator of the field
        assert filter_problem(bad, allowed) is not None, bad
        with pytest.raises(ApiError):
            parse_filter(bad, PROFILE_FILTERS)
