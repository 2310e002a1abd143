"""The Klaviyo sandbox, driven over real HTTP on loopback.

Every request a test sends is checked against Klaviyo's OpenAPI spec after the test, except
the few sent inside ``off_the_record`` on purpose (wrong headers, bodies the spec forbids),
so the sandbox tests cannot drift from the real API's contract.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import requests

from sandbox.httpserver import Request, Response
from sandbox.klaviyo_sandbox import KlaviyoSandbox
from tests.contract.openapi_contract import violations

KEY = "pk_test_key"


class Api:
    def __init__(self, sandbox: KlaviyoSandbox) -> None:
        self.sandbox, self.session = sandbox, requests.Session()
        self.headers = {"Authorization": f"Klaviyo-API-Key {KEY}", "revision": "2026-07-15",
                        "Accept": "application/vnd.api+json"}

    def call(self, method: str, path: str, body: Any = None, *,
             params: dict[str, str] | None = None, url: str | None = None,
             headers: dict[str, str] | None = None) -> requests.Response:
        sent = dict(self.headers if headers is None else headers)
        data = None
        if body is not None:
            sent.setdefault("Content-Type", "application/vnd.api+json")
            data = json.dumps(body)
        return self.session.request(method, url or self.sandbox.url + path, params=params,
                                    data=data, headers=sent, timeout=10)

    def upsert(self, attributes: dict[str, Any], profile_id: str | None = None,
               meta: dict[str, Any] | None = None) -> requests.Response:
        data: dict[str, Any] = {"type": "profile", "attributes": attributes}
        if profile_id:
            data["id"] = profile_id
        if meta:
            data["meta"] = meta
        return self.call("POST", "/api/profile-import", {"data": data})

    def find(self, filter_: str) -> list[dict[str, Any]]:
        response = self.call("GET", "/api/profiles", params={"filter": filter_})
        assert response.status_code == 200, response.text
        return list(response.json()["data"])


@pytest.fixture(scope="module")
def sandbox() -> Iterator[KlaviyoSandbox]:
    with KlaviyoSandbox(api_key=KEY) as running:
        yield running


@pytest.fixture
def api(sandbox: KlaviyoSandbox) -> Iterator[Api]:
    sandbox.reset()
    yield Api(sandbox)
    assert violations(sandbox.server.requests) == []


@contextmanager
def off_the_record(sandbox: KlaviyoSandbox) -> Iterator[None]:
    sandbox.server.record_requests = False
    try:
        yield
    finally:
        sandbox.server.record_requests = True


def error(response: requests.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/vnd.api+json"
    (only,) = response.json()["errors"]
    assert set(only) >= {"id", "status", "code", "title", "detail", "source", "links", "meta"}
    assert only["status"] == status
    return dict(only)


def subscribe_body(profiles: list[dict[str, Any]], list_id: str | None = None,
                   historical: bool | None = None) -> dict[str, Any]:
    attributes: dict[str, Any] = {"custom_source": "iPaaS.com sync",
                                  "profiles": {"data": profiles}}
    if historical is not None:
        attributes["historical_import"] = historical
    data: dict[str, Any] = {"type": "profile-subscription-bulk-create-job",
                            "attributes": attributes}
    if list_id:
        data["relationships"] = {"list": {"data": {"type": "list", "id": list_id}}}
    return {"data": data}


def email_subscription(email: str, consented_at: str | None = None) -> dict[str, Any]:
    marketing: dict[str, Any] = {"consent": "SUBSCRIBED"}
    if consented_at:
        marketing["consented_at"] = consented_at
    return {"type": "profile", "attributes": {
        "email": email, "subscriptions": {"email": {"marketing": marketing}}}}


# -- protocol --------------------------------------------------------------------------


def test_protocol_errors(api: Api, sandbox: KlaviyoSandbox) -> None:
    with off_the_record(sandbox):
        no_key = api.call("GET", "/api/profiles", headers={"revision": "2026-07-15"})
        assert error(no_key, 401)["code"] == "not_authenticated"
        wrong_key = api.call("GET", "/api/profiles", headers={
            "revision": "2026-07-15", "Authorization": "Klaviyo-API-Key other"})
        assert error(wrong_key, 401)["code"] == "not_authenticated"
        no_revision = api.call("GET", "/api/profiles",
                               headers={"Authorization": f"Klaviyo-API-Key {KEY}"})
        assert error(no_revision, 400)["source"] == {"parameter": "revision"}
        plain_json = api.call("POST", "/api/profile-import", {"data": {}},
                              headers={**api.headers, "Content-Type": "application/json"})
        assert error(plain_json, 415)["code"] == "unsupported_media_type"
        assert error(api.call("GET", "/api/nowhere"), 404)["code"] == "not_found"
        assert error(api.call("GET", "/api/profiles/"), 404)["code"] == "not_found"
        assert error(api.call("PUT", "/api/profiles"), 405)["code"] == "method_not_allowed"
    assert sandbox.call_counts["get_profiles"] == 3
    assert sandbox.call_counts["create_or_update_profile"] == 1


# -- profile-import (upsert) -------------------------------------------------------------


def test_upsert_creates_then_updates(api: Api, sandbox: KlaviyoSandbox) -> None:
    created = api.upsert({"email": "ana@example.com", "external_id": "c-1", "first_name": "Ana"})
    assert created.status_code == 201, created.text
    profile_id = created.json()["data"]["id"]
    assert len(profile_id) == 26 and profile_id.isupper()
    updated = api.upsert({"external_id": "c-1", "last_name": "Lima"})
    assert updated.status_code == 200
    assert updated.json()["data"]["id"] == profile_id
    stored = sandbox.profile(profile_id)
    assert stored is not None
    assert stored["attributes"]["first_name"] == "Ana"
    assert stored["attributes"]["last_name"] == "Lima"
    assert sandbox.call_counts["create_or_update_profile"] == 2
    assert len(sandbox.all_profiles()) == 1


def test_upsert_conflict_names_the_email_profile(api: Api, sandbox: KlaviyoSandbox) -> None:
    by_email = sandbox.add_profile(email="ana@example.com")
    by_phone = sandbox.add_profile(phone_number="+15005550006")
    response = api.upsert({"email": "ana@example.com", "phone_number": "+15005550006"})
    conflict = error(response, 409)
    assert conflict["code"] == "duplicate_profile"
    assert conflict["meta"]["duplicate_profile_id"] == by_email
    assert sandbox.profile(by_phone)["attributes"]["email"] is None  # type: ignore[index]


def test_upsert_with_id(api: Api, sandbox: KlaviyoSandbox) -> None:
    mine = sandbox.add_profile(email="ana@example.com", external_id="c-1")
    other = sandbox.add_profile(email="bob@example.com")
    missing = error(api.upsert({"external_id": "c-1"}, profile_id="01ZZZZZZZZZZZZZZZZZZZZZZZZ"),
                    404)
    assert missing["detail"] == "A profile with id 01ZZZZZZZZZZZZZZZZZZZZZZZZ does not exist."
    taken = error(api.upsert({"email": "bob@example.com"}, profile_id=mine), 409)
    assert taken["meta"]["duplicate_profile_id"] == other
    ok = api.upsert({"email": "ana.new@example.com"}, profile_id=mine)
    assert ok.status_code == 200
    assert sandbox.profile(mine)["attributes"]["email"] == "ana.new@example.com"  # type: ignore[index]


def test_null_clears_and_omitted_keeps(api: Api, sandbox: KlaviyoSandbox) -> None:
    profile_id = sandbox.add_profile(
        email="ana@example.com", first_name="Ana", organization="Acme",
        location={"city": "Boston", "address2": "Apt 2"}, properties={"tier": "gold", "x": 1})
    response = api.upsert(
        {"email": "ana@example.com", "organization": None,
         "location": {"address2": None, "zip": "02101"}, "properties": {"tier": "silver"}},
        meta={"patch_properties": {"unset": "x"}})
    assert response.status_code == 200, response.text
    attributes = sandbox.profile(profile_id)["attributes"]  # type: ignore[index]
    assert attributes["first_name"] == "Ana"
    assert attributes["organization"] is None
    assert attributes["location"]["city"] == "Boston"
    assert attributes["location"]["address2"] is None
    assert attributes["location"]["zip"] == "02101"
    assert attributes["properties"] == {"tier": "silver"}


def test_profile_validation(api: Api, sandbox: KlaviyoSandbox) -> None:
    bad_email = error(api.upsert({"email": "not-an-email"}), 400)
    assert (bad_email["detail"], bad_email["source"]) == (
        "Invalid email address", {"pointer": "/data/attributes/email"})
    for phone in ("5005550006", "", "+1 500 555 0006"):
        bad_phone = error(api.upsert({"email": "a@b.com", "phone_number": phone}), 400)
        assert bad_phone["source"] == {"pointer": "/data/attributes/phone_number"}
        assert bad_phone["detail"].startswith("Invalid phone number format")
    no_id = error(api.upsert({"first_name": "Ana"}), 400)
    assert (no_id["detail"], no_id["source"]) == (
        "One or more identifiers is required", {"pointer": "/data/attributes"})
    only_id = sandbox.add_profile(email="ana@example.com")
    cleared = error(api.upsert({"email": None}, profile_id=only_id), 400)
    assert cleared["detail"] == "One or more identifiers is required"
    with off_the_record(sandbox):
        unknown = error(api.upsert({"email": "a@b.com", "nickname": "A"}), 400)
        assert unknown["source"] == {"pointer": "/data/attributes/nickname"}
    assert sandbox.all_profiles() == [sandbox.profile(only_id)]


# -- create, update, read ------------------------------------------------------------------


def test_create_profile_and_duplicate(api: Api, sandbox: KlaviyoSandbox) -> None:
    body = {"data": {"type": "profile", "attributes": {"email": "ana@example.com"}}}
    created = api.call("POST", "/api/profiles", body)
    assert created.status_code == 201
    again = error(api.call("POST", "/api/profiles", body), 409)
    assert again["meta"]["duplicate_profile_id"] == created.json()["data"]["id"]
    assert sandbox.call_counts["create_profile"] == 2


def test_patch_profile(api: Api, sandbox: KlaviyoSandbox) -> None:
    ana = sandbox.add_profile(email="ana@example.com", first_name="Ana")
    bob = sandbox.add_profile(email="bob@example.com")

    def patch(profile_id: str, attributes: dict[str, Any], body_id: str | None = None
              ) -> requests.Response:
        return api.call("PATCH", f"/api/profiles/{profile_id}", {"data": {
            "type": "profile", "id": body_id or profile_id, "attributes": attributes}})

    ok = patch(ana, {"first_name": None, "phone_number": "+15005550006"})
    assert ok.status_code == 200
    assert ok.json()["data"]["attributes"]["first_name"] is None
    assert ok.json()["data"]["attributes"]["phone_number"] == "+15005550006"
    assert error(patch(ana, {"email": "bob@example.com"}), 409)["meta"] == {
        "duplicate_profile_id": bob}
    assert error(patch(ana, {"title": "x"}, body_id=bob), 400)["source"] == {
        "pointer": "/data/id"}
    missing = "01ZZZZZZZZZZZZZZZZZZZZZZZZ"
    assert error(patch(missing, {"title": "x"}), 404)["code"] == "not_found"


def test_get_profile(api: Api, sandbox: KlaviyoSandbox) -> None:
    profile_id = sandbox.add_profile(email="ana@example.com")
    found = api.call("GET", f"/api/profiles/{profile_id}",
                     params={"additional-fields[profile]": "subscriptions"})
    assert found.status_code == 200
    attributes = found.json()["data"]["attributes"]
    assert attributes["subscriptions"]["email"]["marketing"]["consent"] == "NEVER_SUBSCRIBED"
    plain = api.call("GET", f"/api/profiles/{profile_id}")
    assert "subscriptions" not in plain.json()["data"]["attributes"]
    assert error(api.call("GET", "/api/profiles/01ZZZZZZZZZZZZZZZZZZZZZZZZ"), 404)


def test_plus_in_a_filter_matches_only_when_encoded(api: Api, sandbox: KlaviyoSandbox) -> None:
    profile_id = sandbox.add_profile(email="ana+shop@example.com", phone_number="+15005550006")
    assert [p["id"] for p in api.find('equals(email,"ana+shop@example.com")')] == [profile_id]
    assert [p["id"] for p in api.find("equals(phone_number,'+15005550006')")] == [profile_id]
    raw = api.call("GET", "", url=sandbox.url +
                   '/api/profiles?filter=equals(email,"ana+shop@example.com")')
    assert raw.status_code == 200 and raw.json()["data"] == []


def test_profile_filters(api: Api, sandbox: KlaviyoSandbox) -> None:
    ana = sandbox.add_profile(email="ana@example.com", external_id="c-1")
    bob = sandbox.add_profile(email="bob@example.com", external_id="c-2")
    sandbox.add_profile(email="cid@example.com")
    both = api.find('any(email,["ana@example.com","bob@example.com"])')
    assert [p["id"] for p in both] == [ana, bob]
    assert [p["id"] for p in api.find(f"equals(id,'{bob}')")] == [bob]
    assert [p["id"] for p in api.find('equals(external_id,"c-1")')] == [ana]
    with off_the_record(sandbox):
        for bad in ("equals(email,ana@example.com)", 'equals(first_name,"Ana")', "nonsense"):
            rejected = api.call("GET", "/api/profiles", params={"filter": bad})
            assert error(rejected, 400)["detail"] == "Invalid filter provided"
            assert error(rejected, 400)["source"] == {"parameter": "filter"}
        too_big = api.call("GET", "/api/profiles", params={"page[size]": "101"})
        assert error(too_big, 400)["source"] == {"parameter": "page[size]"}


def test_profile_paging(api: Api, sandbox: KlaviyoSandbox) -> None:
    ids = [sandbox.add_profile(external_id=f"c-{n}") for n in range(5)]
    first = api.call("GET", "/api/profiles", params={"page[size]": "2"}).json()
    seen = [p["id"] for p in first["data"]]
    link = first["links"]["next"]
    while link:
        page = api.call("GET", "", url=link).json()
        seen += [p["id"] for p in page["data"]]
        link = page["links"]["next"]
    assert seen == ids


# -- lists -------------------------------------------------------------------------------


def test_lists_page_at_ten(api: Api, sandbox: KlaviyoSandbox) -> None:
    ids = [sandbox.add_list(f"List {n}") for n in range(23)]
    response = api.call("GET", "/api/lists")
    pages = [response.json()]
    while pages[-1]["links"]["next"]:
        pages.append(api.call("GET", "", url=pages[-1]["links"]["next"]).json())
    assert [len(p["data"]) for p in pages] == [10, 10, 3]
    assert [item["id"] for p in pages for item in p["data"]] == ids
    assert all(len(i) == 6 and i.isalnum() for i in ids)
    with off_the_record(sandbox):
        assert error(api.call("GET", "/api/lists", params={"page[size]": "11"}), 400)


def test_list_filters_get_and_create(api: Api, sandbox: KlaviyoSandbox) -> None:
    vip = sandbox.add_list("VIP", "double_opt_in")
    sandbox.add_list("Newsletter")
    for expression in ("equals(name,['VIP'])", 'any(name,["VIP"])'):
        found = api.call("GET", "/api/lists", params={"filter": expression}).json()["data"]
        assert [item["id"] for item in found] == [vip], expression
    with off_the_record(sandbox):  # the spec declares name list-valued; the sandbox is lenient
        single = api.call("GET", "/api/lists", params={"filter": 'equals(name,"VIP")'})
        assert [item["id"] for item in single.json()["data"]] == [vip]
    item = api.call("GET", f"/api/lists/{vip}").json()["data"]
    assert item["type"] == "list"
    assert item["attributes"]["opt_in_process"] == "double_opt_in"
    assert error(api.call("GET", "/api/lists/nope00"), 404)
    created = api.call("POST", "/api/lists", {"data": {"type": "list", "attributes": {
        "name": "iPaaS Customers", "opt_in_process": "single_opt_in"}}})
    assert created.status_code == 201
    assert sandbox.list_members("iPaaS Customers") == set()


def test_list_membership_leaves_consent_alone(api: Api, sandbox: KlaviyoSandbox) -> None:
    list_id = sandbox.add_list("VIP")
    ana = sandbox.add_profile(email="ana@example.com")
    body = {"data": [{"type": "profile", "id": ana}]}
    added = api.call("POST", f"/api/lists/{list_id}/relationships/profiles", body)
    assert (added.status_code, added.content) == (204, b"")
    assert sandbox.list_members("VIP") == {ana}
    assert sandbox.email_consent(ana) == "NEVER_SUBSCRIBED"
    removed = api.call("DELETE", f"/api/lists/{list_id}/relationships/profiles", body)
    assert removed.status_code == 204
    assert sandbox.list_members("VIP") == set()
    unknown = {"data": [{"type": "profile", "id": ana},
                        {"type": "profile", "id": "01ZZZZZZZZZZZZZZZZZZZZZZZZ"}]}
    bad = api.call("POST", f"/api/lists/{list_id}/relationships/profiles", unknown)
    assert error(bad, 400)["source"] == {"pointer": "/data/1/id"}
    assert sandbox.list_members("VIP") == set()
    assert error(api.call("POST", "/api/lists/nope00/relationships/profiles", body), 404)
    too_many = {"data": [{"type": "profile", "id": ana}] * 1001}
    assert error(api.call("POST", f"/api/lists/{list_id}/relationships/profiles", too_many),
                 400)


# -- consent -----------------------------------------------------------------------------


def test_subscribe_single_opt_in(api: Api, sandbox: KlaviyoSandbox) -> None:
    list_id = sandbox.add_list("Newsletter")
    ana = sandbox.add_profile(email="ana@example.com")
    response = api.call("POST", "/api/profile-subscription-bulk-create-jobs",
                        subscribe_body([email_subscription("ana@example.com"),
                                        email_subscription("new@example.com")], list_id))
    assert (response.status_code, response.content) == (202, b"")
    (new,) = sandbox.find_profiles(email="new@example.com")
    assert sandbox.list_members("Newsletter") == {ana, new["id"]}
    assert sandbox.email_consent(ana) == "SUBSCRIBED"
    marketing = sandbox.profile(ana)["subscriptions"]["email"]["marketing"]  # type: ignore[index]
    assert marketing["custom_method_detail"] == "iPaaS.com sync"
    assert sandbox.consent_emails == []
    assert sandbox.call_counts["bulk_subscribe_profiles"] == 1


def test_double_opt_in_waits_but_historical_import_does_not(
        api: Api, sandbox: KlaviyoSandbox) -> None:
    list_id = sandbox.add_list("VIP", "double_opt_in")
    ana = sandbox.add_profile(email="ana@example.com")
    bob = sandbox.add_profile(email="bob@example.com")
    pending = api.call("POST", "/api/profile-subscription-bulk-create-jobs",
                       subscribe_body([email_subscription("ana@example.com")], list_id))
    assert pending.status_code == 202
    assert sandbox.consent_emails == [{"profile_id": ana, "list_id": list_id}]
    assert sandbox.email_consent(ana) == "NEVER_SUBSCRIBED"
    assert sandbox.list_members("VIP") == set()
    historical = api.call("POST", "/api/profile-subscription-bulk-create-jobs", subscribe_body(
        [email_subscription("bob@example.com", "2024-04-01T18:37:06Z")], list_id,
        historical=True))
    assert historical.status_code == 202
    assert sandbox.email_consent(bob) == "SUBSCRIBED"
    assert sandbox.list_members("VIP") == {bob}
    assert len(sandbox.consent_emails) == 1


def test_double_opt_in_list_joins_once_the_person_confirms(
        api: Api, sandbox: KlaviyoSandbox) -> None:
    list_id = sandbox.add_list("VIP", "double_opt_in")
    ana = sandbox.add_profile(email="ana@example.com")
    path = "/api/profile-subscription-bulk-create-jobs"
    api.call("POST", path, subscribe_body([email_subscription("ana@example.com")], list_id))
    # Consent given without a list on a single opt-in account does not confirm the list.
    api.call("POST", path, subscribe_body([email_subscription("ana@example.com")]))
    assert sandbox.email_consent(ana) == "SUBSCRIBED"
    assert sandbox.list_members("VIP") == set()
    assert sandbox.pending_opt_ins(ana) == {list_id}
    assert sandbox.confirm_opt_in(ana) == 1
    assert sandbox.list_members("VIP") == {ana}
    assert sandbox.pending_opt_ins(ana) == set()
    assert sandbox.confirm_opt_in(ana) == 0  # nothing left to confirm


def test_subscribe_without_a_list_follows_the_account_default(
        api: Api, sandbox: KlaviyoSandbox) -> None:
    ana = sandbox.add_profile(email="ana@example.com")
    bob = sandbox.add_profile(email="bob@example.com")
    path = "/api/profile-subscription-bulk-create-jobs"
    assert sandbox.account_opt_in_process == "single_opt_in"
    api.call("POST", path, subscribe_body([email_subscription("ana@example.com")]))
    assert sandbox.email_consent(ana) == "SUBSCRIBED" and sandbox.consent_emails == []
    sandbox.account_opt_in_process = "double_opt_in"
    api.call("POST", path, subscribe_body([email_subscription("ana@example.com"),
                                           email_subscription("bob@example.com")]))
    # Ana had consented already: nothing to confirm. Bob waits for his confirmation.
    assert sandbox.consent_emails == [{"profile_id": bob, "list_id": None}]
    assert sandbox.email_consent(bob) == "NEVER_SUBSCRIBED"
    assert sandbox.confirm_opt_in(bob) == 1
    marketing = sandbox.profile(bob)["subscriptions"]["email"]["marketing"]  # type: ignore[index]
    assert (marketing["consent"], marketing["double_optin"]) == ("SUBSCRIBED", True)
    with pytest.raises(ValueError):
        sandbox.account_opt_in_process = "triple_opt_in"
    sandbox.reset()
    assert sandbox.account_opt_in_process == "single_opt_in"


def test_subscribe_validation(api: Api, sandbox: KlaviyoSandbox) -> None:
    list_id = sandbox.add_list("Newsletter")
    path = "/api/profile-subscription-bulk-create-jobs"
    base = "/data/attributes/profiles/data/0/attributes"
    no_date = error(api.call("POST", path, subscribe_body(
        [email_subscription("a@b.com")], list_id, historical=True)), 400)
    assert no_date["source"] == {"pointer": f"{base}/subscriptions/email/marketing/consented_at"}
    future = error(api.call("POST", path, subscribe_body(
        [email_subscription("a@b.com", "2999-01-01T00:00:00Z")], list_id, historical=True)), 400)
    assert "past" in future["detail"]
    not_historical = error(api.call("POST", path, subscribe_body(
        [email_subscription("a@b.com", "2024-01-01T00:00:00Z")], list_id)), 400)
    assert not_historical["source"]["pointer"].endswith("/consented_at")
    sms = {"type": "profile", "attributes": {"email": "a@b.com", "subscriptions": {
        "sms": {"marketing": {"consent": "SUBSCRIBED"}}}}}
    assert error(api.call("POST", path, subscribe_body([sms])), 400)["source"] == {
        "pointer": f"{base}/phone_number"}
    missing_list = api.call("POST", path, subscribe_body([email_subscription("a@b.com")],
                                                         "nope00"))
    assert error(missing_list, 404)
    with off_the_record(sandbox):
        named = email_subscription("a@b.com")
        named["attributes"]["first_name"] = "Ana"
        assert error(api.call("POST", path, subscribe_body([named])), 400)["source"] == {
            "pointer": f"{base}/first_name"}
        bare = {"type": "profile", "attributes": {"email": "a@b.com"}}
        assert error(api.call("POST", path, subscribe_body([bare])), 400)["source"] == {
            "pointer": f"{base}/subscriptions"}
    too_many = [email_subscription(f"p{n}@example.com") for n in range(1001)]
    assert error(api.call("POST", path, subscribe_body(too_many)), 400)
    assert sandbox.all_profiles() == []  # nothing half-applied


def test_unsubscribe(api: Api, sandbox: KlaviyoSandbox) -> None:
    list_id = sandbox.add_list("Newsletter")
    ana = sandbox.add_profile(email="ana@example.com")
    sandbox.set_consent(ana, "email", "SUBSCRIBED")
    api.call("POST", f"/api/lists/{list_id}/relationships/profiles",
             {"data": [{"type": "profile", "id": ana}]})
    body = {"data": {"type": "profile-subscription-bulk-delete-job", "attributes": {
        "profiles": {"data": [{"type": "profile", "attributes": {
            "email": "ana@example.com",
            "subscriptions": {"email": {"marketing": {"consent": "UNSUBSCRIBED"}}}}}]}},
        "relationships": {"list": {"data": {"type": "list", "id": list_id}}}}}
    response = api.call("POST", "/api/profile-subscription-bulk-delete-jobs", body)
    assert (response.status_code, response.content) == (202, b"")
    assert sandbox.email_consent(ana) == "UNSUBSCRIBED"
    assert sandbox.list_members("Newsletter") == set()
    with off_the_record(sandbox):
        profiles = body["data"]["attributes"]["profiles"]["data"]  # type: ignore[index]
        profiles[0]["id"] = ana
        with_id = api.call("POST", "/api/profile-subscription-bulk-delete-jobs", body)
        assert error(with_id, 400)["source"] == {
            "pointer": "/data/attributes/profiles/data/0/id"}
        del profiles[0]["id"]
        profiles[0]["attributes"]["subscriptions"]["email"]["marketing"]["consent"] = "SUBSCRIBED"
        assert error(api.call("POST", "/api/profile-subscription-bulk-delete-jobs", body), 400)
    assert sandbox.call_counts["bulk_unsubscribe_profiles"] == 3


def test_reset_forgets_everything(api: Api, sandbox: KlaviyoSandbox) -> None:
    sandbox.add_list("VIP")
    api.upsert({"email": "ana@example.com"})
    sandbox.reset()
    assert sandbox.all_profiles() == []
    assert sandbox.call_counts == {}
    assert sandbox.server.requests == []
    with pytest.raises(KeyError):
        sandbox.list_members("VIP")


def test_interceptors_can_answer_instead_of_the_endpoint(
        api: Api, sandbox: KlaviyoSandbox) -> None:
    def throttle(request: Request, operation_id: str) -> Response | None:
        if operation_id != "create_or_update_profile":
            return None
        return Response(429, {"errors": [{"status": 429, "code": "throttled"}]},
                        {"Retry-After": "1"})

    sandbox.interceptors.append(throttle)
    try:
        throttled = api.upsert({"email": "ana@example.com"})
        assert (throttled.status_code, throttled.headers["Retry-After"]) == (429, "1")
        assert api.call("GET", "/api/profiles").status_code == 200
    finally:
        sandbox.interceptors.remove(throttle)
    assert sandbox.all_profiles() == []
    assert sandbox.call_counts["create_or_update_profile"] == 1
