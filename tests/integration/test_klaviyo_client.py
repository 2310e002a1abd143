"""The Klaviyo client against the Klaviyo sandbox on loopback.

Every request the client sends in a test is also checked against Klaviyo's OpenAPI spec
(the ``sandbox`` fixture asserts no contract violations at the end of each test).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import requests

from sandbox.httpserver import Request, Response
from sandbox.klaviyo_sandbox import KlaviyoSandbox
from tests.contract.openapi_contract import violations
from worker.adapters.http import HttpAdapter
from worker.adapters.klaviyo.client import KlaviyoClient, KlaviyoList, SubscriptionTarget
from worker.adapters.list_directory import CachedListDirectory
from worker.core import reasons
from worker.core.errors import (
    ConfigurationError,
    DuplicateProfile,
    FinalError,
    KlaviyoRejected,
    ProfileNotFound,
    ThrottledError,
    ValidationFailed,
)
from worker.core.model import ListRef

API_KEY = "pk_test_0123456789abcdef"
REVISION = "2026-07-15"
PAST = "2024-04-01T18:37:06+00:00"


@pytest.fixture(scope="module")
def running_sandbox() -> Iterator[KlaviyoSandbox]:
    with KlaviyoSandbox(api_key=API_KEY, revision=REVISION) as sandbox:
        yield sandbox


@pytest.fixture
def sandbox(running_sandbox: KlaviyoSandbox) -> Iterator[KlaviyoSandbox]:
    running_sandbox.reset()
    running_sandbox.interceptors.clear()
    yield running_sandbox
    running_sandbox.interceptors.clear()
    problems = violations(running_sandbox.server.requests)
    assert problems == [], "requests that break Klaviyo's OpenAPI spec:\n" + "\n".join(
        problems[:20])


@pytest.fixture
def operations() -> list[str]:
    return []


@pytest.fixture
def client(sandbox: KlaviyoSandbox, operations: list[str]) -> Iterator[KlaviyoClient]:
    with requests.Session() as session:
        yield KlaviyoClient(HttpAdapter(session, timeout=10), base_url=sandbox.url,
                            api_key=API_KEY, revision=REVISION,
                            before_request=operations.append)


def sent(sandbox: KlaviyoSandbox, method: str, path: str) -> list[Request]:
    return [r for r in sandbox.server.requests if r.method == method and r.path == path]


def only_body(sandbox: KlaviyoSandbox, method: str, path: str) -> Any:
    matching = sent(sandbox, method, path)
    assert len(matching) == 1
    return matching[0].json()


# -- profiles ----------------------------------------------------------------------------


def test_upsert_creates_then_updates_by_profile_id(
    client: KlaviyoClient, sandbox: KlaviyoSandbox, operations: list[str]
) -> None:
    created = client.import_profile({"email": "ana@example.com", "external_id": "C-1",
                                     "first_name": "Ana"})
    assert created.created is True
    updated = client.import_profile({"first_name": "Anna", "external_id": "C-1"},
                                    profile_id=created.profile_id)

    assert updated.created is False
    assert updated.profile_id == created.profile_id
    bodies = [r.json() for r in sent(sandbox, "POST", "/api/profile-import")]
    assert "id" not in bodies[0]["data"]
    assert bodies[1]["data"]["id"] == created.profile_id
    profile = sandbox.profile(created.profile_id)
    assert profile is not None
    assert profile["attributes"]["first_name"] == "Anna"
    assert profile["attributes"]["email"] == "ana@example.com"
    assert operations == ["create_or_update_profile", "create_or_update_profile"]


def test_none_attributes_are_omitted_not_sent_as_null(
    client: KlaviyoClient, sandbox: KlaviyoSandbox
) -> None:
    profile_id = sandbox.add_profile(email="bo@example.com", first_name="Bo",
                                     organization="Acme", location={"address2": "Unit 4"})
    client.import_profile({
        "email": "bo@example.com", "first_name": None, "organization": None,
        "last_name": "Berg", "location": {"address2": None, "city": "Boston"},
        "properties": {"tier": None, "loyalty": "gold"},
    })

    raw = sent(sandbox, "POST", "/api/profile-import")[0].body.decode()
    assert "null" not in raw
    attributes = json.loads(raw)["data"]["attributes"]
    assert set(attributes) == {"email", "last_name", "location", "properties"}
    assert attributes["location"] == {"city": "Boston"}
    after = sandbox.profile(profile_id)
    assert after is not None
    assert after["attributes"]["first_name"] == "Bo"
    assert after["attributes"]["organization"] == "Acme"
    assert after["attributes"]["location"]["address2"] == "Unit 4"
    assert after["attributes"]["location"]["city"] == "Boston"


def test_upsert_conflict_raises_duplicate_profile_with_the_existing_id(
    client: KlaviyoClient, sandbox: KlaviyoSandbox
) -> None:
    by_email = sandbox.add_profile(email="cy@example.com")
    sandbox.add_profile(phone_number="+12015550123", external_id="other")

    with pytest.raises(DuplicateProfile) as caught:
        client.import_profile({"email": "cy@example.com", "phone_number": "+12015550123"})

    assert caught.value.duplicate_profile_id == by_email
    assert caught.value.reason == reasons.IDENTIFIER_CONFLICT
    assert "cy@example.com" not in str(caught.value)


def test_patch_conflict_raises_duplicate_profile(
    client: KlaviyoClient, sandbox: KlaviyoSandbox
) -> None:
    holder = sandbox.add_profile(email="dee@example.com")
    mover = sandbox.add_profile(email="eve@example.com")

    with pytest.raises(DuplicateProfile) as caught:
        client.update_profile(mover, {"email": "dee@example.com"})

    assert caught.value.duplicate_profile_id == holder
    assert only_body(sandbox, "PATCH", f"/api/profiles/{mover}")["data"]["id"] == mover


def test_duplicate_without_an_id_still_raises_duplicate_profile(
    client: KlaviyoClient, sandbox: KlaviyoSandbox
) -> None:
    body = {"errors": [{"status": 409, "code": "duplicate_profile", "title": "Conflict."}]}
    sandbox.interceptors.append(lambda request, op: Response(409, body))

    with pytest.raises(DuplicateProfile) as caught:
        client.import_profile({"email": "fay@example.com"})
    assert caught.value.duplicate_profile_id is None


def test_stale_profile_id_raises_profile_not_found(
    client: KlaviyoClient, sandbox: KlaviyoSandbox
) -> None:
    stale = "01HSTALE0000000000000000000"
    with pytest.raises(ProfileNotFound) as on_import:
        client.import_profile({"email": "gus@example.com"}, profile_id=stale)
    with pytest.raises(ProfileNotFound):
        client.update_profile(stale, {"first_name": "Gus"})

    assert on_import.value.reason == reasons.IDENTIFIER_CONFLICT
    assert str(on_import.value) == "create_or_update_profile: HTTP 404"
    assert sandbox.find_profiles(email="gus@example.com") == []


def test_find_profile_by_email_with_plus_encodes_it(
    client: KlaviyoClient, sandbox: KlaviyoSandbox
) -> None:
    profile_id = sandbox.add_profile(email="lee+vip@example.com")
    sandbox.add_profile(email="lee vip@example.com")  # what an unencoded "+" would match

    assert client.find_profile_id("email", "lee+vip@example.com") == profile_id
    assert client.find_profile_id("email", "nobody@example.com") is None

    raw = sent(sandbox, "GET", "/api/profiles")[0].raw_query
    assert "%2B" in raw
    assert "+" not in raw


def test_find_profile_by_phone_and_by_external_id_with_quotes(
    client: KlaviyoClient, sandbox: KlaviyoSandbox
) -> None:
    by_phone = sandbox.add_profile(phone_number="+12015550104", email="p@example.com")
    by_external = sandbox.add_profile(external_id='odd"id\\1', email="q@example.com")

    assert client.find_profile_id("phone_number", "+12015550104") == by_phone
    assert client.find_profile_id("external_id", 'odd"id\\1') == by_external
    assert "%2B12015550104" in sent(sandbox, "GET", "/api/profiles")[0].raw_query
    with pytest.raises(ValueError):
        client.find_profile_id("first_name", "Ann")


def test_get_profile_includes_subscriptions_and_is_none_when_missing(
    client: KlaviyoClient, sandbox: KlaviyoSandbox
) -> None:
    profile_id = sandbox.add_profile(email="hal@example.com")
    sandbox.set_consent(profile_id, "email", "SUBSCRIBED")

    profile = client.get_profile(profile_id)
    assert profile is not None
    assert profile["id"] == profile_id
    marketing = profile["attributes"]["subscriptions"]["email"]["marketing"]
    assert marketing["consent"] == "SUBSCRIBED"
    assert client.get_profile("01HNOSUCHPROFILE0000000000") is None


# -- lists -------------------------------------------------------------------------------


def test_find_lists_follows_pages_and_matches_names_exactly(
    client: KlaviyoClient, sandbox: KlaviyoSandbox, operations: list[str]
) -> None:
    wanted = {sandbox.add_list("Newsletter", "double_opt_in") for _ in range(12)}
    for index in range(15):
        sandbox.add_list(f"Other {index}")
    sandbox.add_list("Newsletter 2")

    found = client.find_lists("Newsletter")

    assert {lst.id for lst in found} == wanted
    assert all(lst.name == "Newsletter" and lst.opt_in_process == "double_opt_in"
               for lst in found)
    assert sandbox.call_counts["get_lists"] == 2
    assert operations == ["get_lists", "get_lists"]
    pages = sent(sandbox, "GET", "/api/lists")
    assert "page%5Bcursor%5D" in pages[1].raw_query
    assert client.find_lists("Missing") == []


def test_create_list(client: KlaviyoClient, sandbox: KlaviyoSandbox) -> None:
    created = client.create_list("VIP", "single_opt_in")
    plain = client.create_list("Plain")

    assert created.name == "VIP"
    assert created.opt_in_process == "single_opt_in"
    assert client.find_lists("VIP") == [created]
    assert isinstance(plain, KlaviyoList)
    assert "opt_in_process" not in sent(sandbox, "POST", "/api/lists")[1].json()["data"][
        "attributes"]


def test_list_directory_caches_the_id_with_the_opt_in_process(
    client: KlaviyoClient, sandbox: KlaviyoSandbox, redis_client: redis.Redis
) -> None:
    weekly = sandbox.add_list("Weekly", "double_opt_in")
    directory = CachedListDirectory(redis_client, client)
    assert directory.lookup("Weekly") == ListRef(weekly, "double_opt_in")
    assert directory.lookup("Weekly") == ListRef(weekly, "double_opt_in")
    assert sandbox.call_counts["get_lists"] == 1  # the second answer came from Redis
    assert directory.list_id("Weekly") == weekly
    assert directory.lookup("Missing") is None

    # An entry cached before the opt-in process was (a bare id) is resolved again.
    redis_client.hset("ipk:lists", "Weekly", weekly)
    assert directory.lookup("Weekly") == ListRef(weekly, "double_opt_in")
    assert sandbox.call_counts["get_lists"] == 3


def test_list_directory_creates_a_missing_list_with_the_account_default(
    client: KlaviyoClient, sandbox: KlaviyoSandbox, redis_client: redis.Redis
) -> None:
    sandbox.account_opt_in_process = "double_opt_in"
    directory = CachedListDirectory(redis_client, client, create_missing=True)
    created = directory.lookup("Fresh")
    assert created is not None and created.opt_in_process == "double_opt_in"
    assert not created.subscribes_at_once


def test_add_and_remove_members_in_chunks_of_1000(
    client: KlaviyoClient, sandbox: KlaviyoSandbox
) -> None:
    list_id = sandbox.add_list("Members")
    ids = [sandbox.add_profile(external_id=f"m{i}") for i in range(1500)]

    client.add_profiles_to_list(list_id, ids)
    assert sandbox.call_counts["add_profiles_to_list"] == 2
    assert sandbox.list_members("Members") == set(ids)
    batches = [len(r.json()["data"]) for r in sent(
        sandbox, "POST", f"/api/lists/{list_id}/relationships/profiles")]
    assert batches == [1000, 500]

    client.remove_profiles_from_list(list_id, ids[:1200])
    assert sandbox.call_counts["remove_profiles_from_list"] == 2
    assert sandbox.list_members("Members") == set(ids[1200:])
    assert all(sandbox.email_consent(i) == "NEVER_SUBSCRIBED" for i in ids[:3])


def test_empty_member_change_sends_nothing(client: KlaviyoClient, sandbox: KlaviyoSandbox
                                           ) -> None:
    client.add_profiles_to_list("abc123", [])
    assert sandbox.server.requests == []


# -- consent -----------------------------------------------------------------------------


def test_subscribe_to_double_opt_in_list_sends_a_consent_email(
    client: KlaviyoClient, sandbox: KlaviyoSandbox
) -> None:
    list_id = sandbox.add_list("Weekly", "double_opt_in")
    profile_id = sandbox.add_profile(email="ivy@example.com")

    client.subscribe([SubscriptionTarget(email="ivy@example.com", profile_id=profile_id)],
                     list_id=list_id, historical_import=False)

    assert [e["profile_id"] for e in sandbox.consent_emails] == [profile_id]
    assert sandbox.email_consent(profile_id) == "NEVER_SUBSCRIBED"  # until confirmed
    attributes = only_body(sandbox, "POST", "/api/profile-subscription-bulk-create-jobs")[
        "data"]["attributes"]
    assert attributes["historical_import"] is False
    assert attributes["custom_source"] == "iPaaS.com sync"
    entry = attributes["profiles"]["data"][0]
    assert entry["id"] == profile_id
    assert entry["attributes"]["subscriptions"] == {
        "email": {"marketing": {"consent": "SUBSCRIBED"}}}


def test_historical_import_subscribes_at_once_without_consent_email(
    client: KlaviyoClient, sandbox: KlaviyoSandbox
) -> None:
    list_id = sandbox.add_list("Weekly", "double_opt_in")
    profile_id = sandbox.add_profile(email="jo@example.com")

    client.subscribe([SubscriptionTarget(email="jo@example.com", consented_at=PAST)],
                     list_id=list_id, historical_import=True)

    assert sandbox.consent_emails == []
    assert sandbox.email_consent(profile_id) == "SUBSCRIBED"
    assert profile_id in sandbox.list_members("Weekly")
    marketing = only_body(sandbox, "POST", "/api/profile-subscription-bulk-create-jobs")[
        "data"]["attributes"]["profiles"]["data"][0]["attributes"]["subscriptions"]["email"][
        "marketing"]
    assert marketing == {"consent": "SUBSCRIBED", "consented_at": PAST}


def test_historical_import_without_consented_at_is_refused_before_sending(
    client: KlaviyoClient, sandbox: KlaviyoSandbox
) -> None:
    with pytest.raises(ValueError):
        client.subscribe([SubscriptionTarget(email="kim@example.com")], list_id=None,
                         historical_import=True)
    assert sandbox.server.requests == []


def test_target_without_email_or_phone_is_a_validation_failure(
    client: KlaviyoClient, sandbox: KlaviyoSandbox
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        client.subscribe([SubscriptionTarget(profile_id="01HONLYID00000000000000000")],
                         list_id=None, historical_import=False)
    assert caught.value.reason == reasons.MISSING_IDENTIFIER
    with pytest.raises(ValidationFailed):
        client.unsubscribe([SubscriptionTarget()], list_id=None)
    assert sandbox.server.requests == []


def test_consented_at_is_not_sent_without_historical_import(
    client: KlaviyoClient, sandbox: KlaviyoSandbox
) -> None:
    list_id = sandbox.add_list("Single")
    client.subscribe([SubscriptionTarget(email="lu@example.com", consented_at=PAST)],
                     list_id=list_id, historical_import=False)
    raw = sent(sandbox, "POST", "/api/profile-subscription-bulk-create-jobs")[0].body
    assert b"consented_at" not in raw
    (profile,) = sandbox.find_profiles(email="lu@example.com")
    assert sandbox.email_consent(profile["id"]) == "SUBSCRIBED"


def test_phone_only_target_subscribes_to_sms(
    client: KlaviyoClient, sandbox: KlaviyoSandbox
) -> None:
    profile_id = sandbox.add_profile(phone_number="+12015550199", external_id="s1")
    list_id = sandbox.add_list("Sms Subscribers")

    client.subscribe([SubscriptionTarget(phone_number="+12015550199")], list_id=list_id,
                     historical_import=False)

    profile = sandbox.profile(profile_id)
    assert profile is not None
    assert profile["subscriptions"]["sms"]["marketing"]["consent"] == "SUBSCRIBED"
    assert profile["subscriptions"]["email"]["marketing"]["consent"] == "NEVER_SUBSCRIBED"


def test_subscribe_without_list_and_in_chunks_of_1000(
    client: KlaviyoClient, sandbox: KlaviyoSandbox
) -> None:
    targets = [SubscriptionTarget(email=f"bulk{i}@example.com") for i in range(1001)]
    client.subscribe(targets, list_id=None, historical_import=False)

    bodies = [r.json() for r in sent(sandbox, "POST",
                                     "/api/profile-subscription-bulk-create-jobs")]
    assert [len(b["data"]["attributes"]["profiles"]["data"]) for b in bodies] == [1000, 1]
    assert all("relationships" not in b["data"] for b in bodies)
    (last,) = sandbox.find_profiles(email="bulk1000@example.com")
    assert sandbox.email_consent(last["id"]) == "SUBSCRIBED"


def test_unsubscribe_in_chunks_of_100_without_ids(
    client: KlaviyoClient, sandbox: KlaviyoSandbox
) -> None:
    list_id = sandbox.add_list("Leaving")
    ids = [sandbox.add_profile(email=f"out{i}@example.com") for i in range(250)]
    for profile_id in ids:
        sandbox.set_consent(profile_id, "email", "SUBSCRIBED")
    targets = [SubscriptionTarget(email=f"out{i}@example.com", profile_id=ids[i])
               for i in range(250)]

    client.unsubscribe(targets, list_id=list_id)

    bodies = [r.json() for r in sent(sandbox, "POST",
                                     "/api/profile-subscription-bulk-delete-jobs")]
    assert [len(b["data"]["attributes"]["profiles"]["data"]) for b in bodies] == [100, 100, 50]
    first = bodies[0]["data"]["attributes"]["profiles"]["data"][0]
    assert "id" not in first
    assert first["attributes"]["subscriptions"] == {
        "email": {"marketing": {"consent": "UNSUBSCRIBED"}}}
    assert bodies[0]["data"]["relationships"]["list"]["data"]["id"] == list_id
    assert all(sandbox.email_consent(i) == "UNSUBSCRIBED" for i in ids)


# -- protocol and failures ---------------------------------------------------------------


def test_every_request_carries_the_protocol_headers(
    client: KlaviyoClient, sandbox: KlaviyoSandbox
) -> None:
    client.import_profile({"email": "max@example.com"})
    client.find_profile_id("email", "max@example.com")

    for request in sandbox.server.requests:
        assert request.headers["authorization"] == f"Klaviyo-API-Key {API_KEY}"
        assert request.headers["revision"] == REVISION
        assert request.headers["accept"] == "application/vnd.api+json"
        assert request.headers["user-agent"].startswith("ipaas-klaviyo/")
    post, get = sandbox.server.requests
    assert post.headers["content-type"] == "application/vnd.api+json"
    assert "content-type" not in get.headers


def test_wrong_key_is_final_and_never_echoed(sandbox: KlaviyoSandbox) -> None:
    wrong_key = "pk_wrong_secret_999"
    with requests.Session() as session:
        client = KlaviyoClient(HttpAdapter(session), base_url=sandbox.url, api_key=wrong_key,
                               revision=REVISION)
        with pytest.raises(FinalError) as caught:
            client.import_profile({"email": "ned@example.com"})

    error = caught.value
    assert isinstance(error, KlaviyoRejected)
    assert error.status == 401
    assert str(error) == "create_or_update_profile: HTTP 401"
    rendered = [str(error), repr(error), repr(client), *(e.message for e in error.errors)]
    assert not any(wrong_key in text for text in rendered)


def test_key_with_a_line_break_is_refused_without_echo() -> None:
    with pytest.raises(ConfigurationError) as caught:
        KlaviyoClient(HttpAdapter(requests.Session()), base_url="http://127.0.0.1:9",
                      api_key="pk_secret\r\nX-Evil: 1", revision=REVISION)
    assert "pk_secret" not in str(caught.value)


def test_bad_request_names_fields_without_echoing_values(
    client: KlaviyoClient, sandbox: KlaviyoSandbox
) -> None:
    with pytest.raises(KlaviyoRejected) as caught:
        client.import_profile({"email": "not-an-email@", "external_id": "C-9"})

    error = caught.value
    assert error.status == 400
    assert error.reason == reasons.KLAVIYO_REJECTED
    assert [(e.field, e.reason, e.message) for e in error.errors] == [
        ("email", reasons.KLAVIYO_REJECTED, "invalid: Invalid input.")]
    rendered = [str(error), *(e.message for e in error.errors), *(e.field for e in error.errors)]
    assert not any("not-an-email" in text for text in rendered)


def test_bad_filter_reports_the_parameter(client: KlaviyoClient, sandbox: KlaviyoSandbox
                                          ) -> None:
    def broken_filter(request: Request, operation: str) -> Response | None:
        error = {"code": "invalid", "title": "Invalid input.", "status": 400,
                 "detail": 'Invalid filter provided "sam@example.com"',
                 "source": {"parameter": "filter"}}
        return Response(400, {"errors": [error]})

    sandbox.interceptors.append(broken_filter)
    with pytest.raises(KlaviyoRejected) as caught:
        client.find_profile_id("email", "sam@example.com")
    assert [e.field for e in caught.value.errors] == ["filter"]
    assert "sam@example.com" not in str(caught.value.errors)


def test_unparseable_error_body_is_tolerated(client: KlaviyoClient, sandbox: KlaviyoSandbox
                                             ) -> None:
    sandbox.interceptors.append(lambda request, op: Response(
        400, "<html>Bad Request</html>", content_type="text/html"))
    with pytest.raises(KlaviyoRejected) as caught:
        client.add_profiles_to_list("abc123", ["01HX"])
    assert caught.value.errors == []
    assert str(caught.value) == "add_profiles_to_list: HTTP 400"


def test_throttling_surfaces_as_retryable_with_retry_after(
    client: KlaviyoClient, sandbox: KlaviyoSandbox
) -> None:
    body = {"errors": [{"status": 429, "code": "throttled", "title": "Request was throttled.",
                        "detail": "Request was throttled. Expected available in 1 second."}]}
    sandbox.interceptors.append(
        lambda request, op: Response(429, body, headers={"Retry-After": "3"}))
    with pytest.raises(ThrottledError) as caught:
        client.find_lists("Anything")
    assert caught.value.retry_after == 3.0
