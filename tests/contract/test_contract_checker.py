"""The contract checker must pass what Klaviyo accepts and report what it would reject."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlencode

import pytest

from sandbox.httpserver import Request
from tests.contract.openapi_contract import filter_problem, klaviyo_spec, load_stats, violations

HEADERS = {"authorization": "Klaviyo-API-Key pk_test", "revision": "2026-07-15",
           "content-type": "application/vnd.api+json", "accept": "application/vnd.api+json"}


def request(method: str, path: str, body: Any = None, query: dict[str, str] | None = None,
            headers: dict[str, str] | None = None) -> Request:
    raw_query = urlencode(query or {})
    return Request(method=method, path=path, raw_query=raw_query, query=dict(query or {}),
                   headers=dict(HEADERS if headers is None else headers),
                   body=b"" if body is None else json.dumps(body).encode())


def upsert(attributes: dict[str, Any]) -> Request:
    return request("POST", "/api/profile-import",
                   {"data": {"type": "profile", "attributes": attributes}})


def only(problems: list[str]) -> str:
    assert len(problems) == 1, problems
    return problems[0]


def test_spec_loads_once_per_process_and_quickly() -> None:
    started = time.perf_counter()
    first = klaviyo_spec()
    assert klaviyo_spec() is first
    violations([request("GET", "/api/profiles")])
    assert load_stats()["loads"] == 1
    assert time.perf_counter() - started < 10


def test_correct_requests_pass() -> None:
    good = [
        upsert({"email": "ana+1@example.com", "external_id": "c-1", "phone_number": None,
                "location": {"city": "Boston", "address2": None, "latitude": 42.1},
                "properties": {"ipaas_tier": "gold"}}),
        request("PATCH", "/api/profiles/01GDDKASAP8TKDDA2GRZDSVP4H",
                {"data": {"type": "profile", "id": "01GDDKASAP8TKDDA2GRZDSVP4H",
                          "attributes": {"organization": None},
                          "meta": {"patch_properties": {"unset": ["legacy"]}}}}),
        request("GET", "/api/profiles",
                query={"filter": 'any(email,["a+b@example.com","c@d.com"])',
                       "page[size]": "100", "additional-fields[profile]": "subscriptions"}),
        request("GET", "/api/profiles", query={"filter": "equals(phone_number,'+15005550006')"}),
        request("GET", "/api/lists", query={"filter": "equals(name,['VIP'])", "page[size]": "10"}),
        request("DELETE", "/api/lists/Y6nRLr/relationships/profiles",
                {"data": [{"type": "profile", "id": "01GDDKASAP8TKDDA2GRZDSVP4H"}]}),
        request("POST", "/api/profile-subscription-bulk-create-jobs", {"data": {
            "type": "profile-subscription-bulk-create-job",
            "attributes": {"custom_source": "iPaaS", "historical_import": True, "profiles": {
                "data": [{"type": "profile", "attributes": {
                    "email": "a@b.com", "subscriptions": {"email": {"marketing": {
                        "consent": "SUBSCRIBED", "consented_at": "2024-01-01T00:00:00Z"}}}}}]}},
            "relationships": {"list": {"data": {"type": "list", "id": "Y6nRLr"}}}}}),
    ]
    assert violations(good) == []


@pytest.mark.parametrize(("bad", "expected"), [
    (request("POST", "/api/profile-import", {"data": {"type": "profile"}}),
     "'attributes' is a required property"),
    (upsert({"email": 5}), "body /data/attributes/email: fails 'type'"),
    (request("POST", "/api/profile-import", {"data": {"type": "list", "attributes": {}}}),
     "body /data/type: fails 'enum'"),
    (request("GET", "/api/profile"), "no such operation"),
    (request("PUT", "/api/profiles"), "no such operation"),
    (request("GET", "/api/profiles/"), "no such operation"),
    (request("GET", "/api/profiles", headers={"authorization": "Klaviyo-API-Key pk"}),
     "missing required header 'revision'"),
    (request("GET", "/api/profiles", headers={"revision": "2026-07-15",
                                              "authorization": "Bearer pk"}),
     "Klaviyo-API-Key scheme"),
    (request("GET", "/api/profiles", query={"page[size]": "101"}), "page[size]"),
    (request("GET", "/api/lists", query={"page[size]": "20"}), "page[size]"),
    (request("GET", "/api/profiles", query={"pagesize": "5"}), "'pagesize' is not declared"),
    (request("GET", "/api/profiles", query={"filter": "equals(email,a@b.com)"}), "filter:"),
    (request("GET", "/api/profiles", query={"filter": 'equals(first_name,"Ana")'}),
     "cannot be filtered on"),
    (request("GET", "/api/profiles", query={"filter": 'any(email,"a@b.com")'}),
     "operator 'any' with a single value"),
    (upsert({"email": "a@b.com", "phoneNumber": "+15005550006"}),
     "body /data/attributes/phoneNumber: member not in the schema"),
    (request("POST", "/api/profile-subscription-bulk-create-jobs", {"data": {
        "type": "profile-subscription-bulk-create-job", "attributes": {"profiles": {"data": [
            {"type": "profile", "attributes": {"email": "a@b.com", "subscriptions": {
                "email": {"marketing": {"consent": "UNSUBSCRIBED"}}}}}]}}}}),
     "consent: fails 'enum'"),
    (request("PATCH", "/api/profiles/X", {"data": {"type": "profile", "attributes": {}}}),
     "'id' is a required property"),
])
def test_wrong_requests_are_reported(bad: Request, expected: str) -> None:
    problem = only(violations([bad]))
    assert problem.startswith(f"{bad.method} {bad.path}: ")
    assert expected in problem


def test_wrong_content_type_and_broken_json_are_reported() -> None:
    wrong_type = upsert({"email": "a@b.com"})
    wrong_type.headers["content-type"] = "application/json"
    broken = upsert({"email": "a@b.com"})
    broken.body = b"{not json"
    problems = violations([wrong_type, broken])
    assert "not application/vnd.api+json" in problems[0]
    assert "not valid JSON" in problems[1]


def test_messages_never_echo_header_or_body_values() -> None:
    secret_key = "pk_very_secret_value"
    bad = upsert({"email": 12345, "first_name": "Zelda-Private"})
    bad.headers.update({"authorization": f"Bearer {secret_key}"})
    del bad.headers["revision"]
    text = " ".join(violations([bad]))
    assert "12345" not in text and "Zelda" not in text and secret_key not in text
    assert "revision" in text and "/data/attributes/email" in text


def test_filter_grammar() -> None:
    rules = klaviyo_spec().spec  # keep the test on the real x-klaviyo-filters of get_profiles
    allowed = (rules / "paths" / "/api/profiles" / "get").read_value()["x-klaviyo-filters"]
    assert filter_problem('equals(email,"a@b.com"),equals(external_id,"7")', allowed) is None
    assert filter_problem("greater-than(updated,2026-01-01T00:00:00Z)", allowed) is None
    assert filter_problem('equals(email,"a@b.com"),', allowed) is not None
    assert filter_problem('equals(email,"a@b.com") equals(id,"x")', allowed) is not None
