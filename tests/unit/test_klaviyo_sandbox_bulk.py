"""The Klaviyo sandbox's bulk profile import jobs, driven over real HTTP on loopback.

Every request a test sends is checked against Klaviyo's OpenAPI spec after the test, except
those sent inside ``off_the_record`` on purpose (bodies the sandbox must refuse).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import requests

from sandbox.klaviyo_sandbox import KlaviyoSandbox
from tests.contract.openapi_contract import violations

KEY = "pk_test_key"
JOBS = "/api/profile-bulk-import-jobs"
ROWS = "/data/attributes/profiles/data"


class Api:
    def __init__(self, sandbox: KlaviyoSandbox) -> None:
        self.sandbox, self.session = sandbox, requests.Session()
        self.headers = {"Authorization": f"Klaviyo-API-Key {KEY}", "revision": "2026-07-15",
                        "Accept": "application/vnd.api+json"}

    def call(self, method: str, path: str, body: Any = None, *,
             params: dict[str, str] | None = None, raw: bytes | None = None
             ) -> requests.Response:
        headers = dict(self.headers)
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        if data is not None:
            headers["Content-Type"] = "application/vnd.api+json"
        return self.session.request(method, self.sandbox.url + path, params=params,
                                    data=data, headers=headers, timeout=30)

    def start(self, rows: list[dict[str, Any]], list_ids: list[str] | None = None
              ) -> requests.Response:
        return self.call("POST", JOBS, job_body(rows, list_ids))

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.call("GET", f"{JOBS}/{job_id}")
        assert response.status_code == 200, response.text
        return dict(response.json()["data"])

    def finish(self, job_id: str) -> dict[str, Any]:
        for _ in range(10):
            job = self.job(job_id)
            if job["attributes"]["status"] == "complete":
                return job
        raise AssertionError("job never completed")

    def all_pages(self, path: str, params: dict[str, str] | None = None
                  ) -> tuple[list[dict[str, Any]], int]:
        """Every item of a paged collection, and how many pages it took."""
        items: list[dict[str, Any]] = []
        url: str | None = self.sandbox.url + path
        pages = 0
        while url:
            response = self.session.get(url, params=params if pages == 0 else None,
                                        headers=self.headers, timeout=30)
            assert response.status_code == 200, response.text
            items.extend(response.json()["data"])
            url = response.json()["links"]["next"]
            pages += 1
        return items, pages


def job_body(rows: list[dict[str, Any]], list_ids: list[str] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"type": "profile-bulk-import-job",
                            "attributes": {"profiles": {"data": rows}}}
    if list_ids is not None:
        data["relationships"] = {"lists": {"data": [{"type": "list", "id": i}
                                                    for i in list_ids]}}
    return {"data": data}


def row(**attributes: Any) -> dict[str, Any]:
    return {"type": "profile", "attributes": attributes}


def customers(count: int, start: int = 0) -> list[dict[str, Any]]:
    return [row(external_id=f"C{n}", email=f"c{n}@example.com", first_name="Ann")
            for n in range(start, start + count)]


@pytest.fixture(scope="module")
def sandbox() -> Iterator[KlaviyoSandbox]:
    with KlaviyoSandbox(api_key=KEY) as running:
        yield running


@pytest.fixture
def api(sandbox: KlaviyoSandbox) -> Iterator[Api]:
    sandbox.reset()
    yield Api(sandbox)
    problems = violations(sandbox.server.requests)
    assert problems == [], problems[:5]


@contextmanager
def off_the_record(sandbox: KlaviyoSandbox) -> Iterator[None]:
    sandbox.server.record_requests = False
    try:
        yield
    finally:
        sandbox.server.record_requests = True


def errors(response: requests.Response, status: int) -> list[dict[str, Any]]:
    assert response.status_code == status, response.text
    return list(response.json()["errors"])


# -- lifecycle -----------------------------------------------------------------------------


def test_job_goes_queued_processing_complete_and_imports(api: Api,
                                                        sandbox: KlaviyoSandbox) -> None:
    response = api.start(customers(3))
    assert response.status_code == 202, response.text
    created = response.json()["data"]
    assert created["type"] == "profile-bulk-import-job"
    assert created["attributes"]["status"] == "queued"
    assert created["attributes"]["total_count"] == 3
    assert created["attributes"]["expires_at"] > created["attributes"]["created_at"]
    assert sandbox.all_profiles() == []  # nothing before Klaviyo gets to the job

    statuses = [api.job(created["id"])["attributes"] for _ in range(4)]
    assert [s["status"] for s in statuses] == ["queued", "processing", "complete", "complete"]
    assert statuses[0]["started_at"] is None and statuses[1]["started_at"] is not None
    assert statuses[1]["completed_count"] == 0
    done = statuses[2]
    assert (done["total_count"], done["completed_count"], done["failed_count"]) == (3, 3, 0)
    assert done["completed_at"] is not None
    (stored,) = sandbox.find_profiles(external_id="C1")
    assert stored["attributes"]["email"] == "c1@example.com"
    assert stored["attributes"]["first_name"] == "Ann"
    assert sandbox.call_counts["bulk_import_profiles"] == 1
    assert sandbox.call_counts["get_bulk_import_profiles_job"] == 4


def test_polls_until_complete_is_configurable(api: Api, sandbox: KlaviyoSandbox) -> None:
    sandbox.bulk_polls_until_complete = 0
    job_id = api.start(customers(1)).json()["data"]["id"]
    assert api.job(job_id)["attributes"]["status"] == "complete"
    sandbox.reset()
    assert sandbox.bulk_polls_until_complete == 2  # reset restores the default


def test_reimport_updates_without_duplicates_and_nulls_do_not_clear(
        api: Api, sandbox: KlaviyoSandbox) -> None:
    api.finish(api.start(customers(2)).json()["data"]["id"])
    again = [row(external_id="C0", email="c0@example.com", first_name=None, last_name="Lee",
                 location={"city": "Oslo", "zip": None}),
             row(email="c1@example.com", organization="Acme")]
    done = api.finish(api.start(again).json()["data"]["id"])
    assert done["attributes"]["completed_count"] == 2
    assert len(sandbox.all_profiles()) == 2
    (first,) = sandbox.find_profiles(external_id="C0")
    assert first["attributes"]["first_name"] == "Ann"  # null ignored, not cleared
    assert first["attributes"]["last_name"] == "Lee"
    assert first["attributes"]["location"]["city"] == "Oslo"
    (second,) = sandbox.find_profiles(email="c1@example.com")
    assert second["attributes"]["external_id"] == "C1"
    assert second["attributes"]["organization"] == "Acme"


def test_bad_rows_reject_the_whole_request(api: Api, sandbox: KlaviyoSandbox) -> None:
    rows = customers(4)
    rows[1]["attributes"]["email"] = "not-an-email"
    rows[3]["attributes"]["phone_number"] = "5551234"
    rows.append(row(first_name="Nobody"))  # no identifier
    found = errors(api.start(rows), 400)
    assert [e["source"]["pointer"] for e in found] == [
        f"{ROWS}/1/attributes/email", f"{ROWS}/3/attributes/phone_number",
        f"{ROWS}/4/attributes"]
    assert all(e["code"] == "invalid" for e in found)
    assert sandbox.all_profiles() == []
    assert not any("c1@example.com" in json.dumps(e) for e in found)


def test_request_limits(api: Api, sandbox: KlaviyoSandbox) -> None:
    (too_many,) = errors(api.start(customers(10_001)), 400)
    assert too_many["source"]["pointer"] == ROWS
    with off_the_record(sandbox):
        padding = "x" * 600
        big = [row(external_id=f"C{n}", properties={"note": padding}) for n in range(9_000)]
        body = json.dumps(job_body(big)).encode()
        assert len(body) > 5_000_000
        (too_large,) = errors(api.call("POST", JOBS, raw=body), 413)
        assert too_large["code"] == "request_too_large"
        assert errors(api.start([]), 400)[0]["source"]["pointer"] == ROWS
    assert sandbox.all_profiles() == []


def test_unknown_job_is_404(api: Api) -> None:
    for path in ("", "/import-errors", "/profiles"):
        assert errors(api.call("GET", f"{JOBS}/01HNOSUCHJOB{path}"), 404)[0]["code"] == \
            "not_found"


# -- partial failures ----------------------------------------------------------------------


def test_conflicting_row_becomes_an_import_error(api: Api, sandbox: KlaviyoSandbox) -> None:
    sandbox.add_profile(email="taken@example.com")
    sandbox.add_profile(external_id="X1")
    rows = [*customers(2), row(external_id="X1", email="taken@example.com")]
    job_id = api.start(rows).json()["data"]["id"]
    assert api.all_pages(f"{JOBS}/{job_id}/import-errors")[0] == []  # not run yet
    done = api.finish(job_id)["attributes"]
    assert (done["total_count"], done["completed_count"], done["failed_count"]) == (3, 2, 1)
    (only,), _ = api.all_pages(f"{JOBS}/{job_id}/import-errors")
    assert only["type"] == "import-error"
    assert only["attributes"]["code"] == "duplicate_profile"
    assert only["attributes"]["source"]["pointer"] == f"{ROWS}/2/attributes"
    assert only["attributes"]["original_payload"] == rows[2]
    assert len(sandbox.find_profiles(email="taken@example.com")) == 1


def test_injected_row_errors(api: Api, sandbox: KlaviyoSandbox) -> None:
    sandbox.bulk_row_error = lambda a: "invalid" if a.get("external_id") == "C1" else None
    done = api.finish(api.start(customers(3)).json()["data"]["id"])
    assert (done["attributes"]["completed_count"], done["attributes"]["failed_count"]) == (2, 1)
    assert sandbox.find_profiles(external_id="C1") == []
    items, _ = api.all_pages(f"{JOBS}/{done['id']}/import-errors")
    assert [e["attributes"]["original_payload"]["attributes"]["external_id"]
            for e in items] == ["C1"]


# -- lists and paging ----------------------------------------------------------------------


def test_lists_relationship_adds_every_imported_profile(api: Api,
                                                        sandbox: KlaviyoSandbox) -> None:
    newsletter = sandbox.add_list("Newsletter")
    response = api.start(customers(3), [newsletter])
    assert response.json()["data"]["relationships"]["lists"]["data"] == [
        {"type": "list", "id": newsletter}]
    job_id = response.json()["data"]["id"]
    api.finish(job_id)
    ids = {p["id"] for p in sandbox.all_profiles()}
    assert sandbox.list_members("Newsletter") == ids
    lists = api.call("GET", f"{JOBS}/{job_id}/lists").json()["data"]
    assert [item["id"] for item in lists] == [newsletter]
    relationship = api.call("GET", f"{JOBS}/{job_id}/relationships/lists").json()["data"]
    assert relationship == [{"type": "list", "id": newsletter}]

    (unknown,) = errors(api.start(customers(1, 9), ["NoSuch"]), 400)
    assert unknown["source"]["pointer"] == "/data/relationships/lists"
    assert sandbox.find_profiles(external_id="C9") == []


def test_profiles_and_errors_page_at_one_hundred(api: Api, sandbox: KlaviyoSandbox) -> None:
    sandbox.bulk_row_error = lambda a: "invalid" if a["external_id"].endswith("7") else None
    job_id = api.start(customers(1_050)).json()["data"]["id"]
    api.finish(job_id)
    profiles, pages = api.all_pages(f"{JOBS}/{job_id}/profiles",
                                    {"page[size]": "100",
                                     "fields[profile]": "email,external_id"})
    assert (len(profiles), pages) == (945, 10)
    assert set(profiles[0]["attributes"]) == {"email", "external_id"}
    assert {p["attributes"]["external_id"] for p in profiles} == {
        f"C{n}" for n in range(1_050) if n % 10 != 7}
    failures, pages = api.all_pages(f"{JOBS}/{job_id}/import-errors", {"page[size]": "100"})
    assert (len(failures), pages) == (105, 2)
    ids, pages = api.all_pages(f"{JOBS}/{job_id}/relationships/profiles",
                               {"page[size]": "100"})
    assert [i["id"] for i in ids] == [p["id"] for p in profiles]
    with off_the_record(sandbox):
        too_big = api.call("GET", f"{JOBS}/{job_id}/profiles", params={"page[size]": "101"})
    assert errors(too_big, 400)[0]["source"] == {"parameter": "page[size]"}


def test_complete_bulk_import_jobs_runs_pending_jobs(api: Api,
                                                     sandbox: KlaviyoSandbox) -> None:
    api.start(customers(2))
    assert sandbox.complete_bulk_import_jobs() == 1
    assert len(sandbox.all_profiles()) == 2
    assert sandbox.complete_bulk_import_jobs() == 0


# -- identifier indexes --------------------------------------------------------------------


def test_indexes_follow_every_writer(api: Api, sandbox: KlaviyoSandbox) -> None:
    legacy = sandbox.add_profile(email="old@example.com")
    response = api.call("POST", "/api/profile-import", {"data": {
        "type": "profile", "id": legacy, "attributes": {"email": "new@example.com"}}})
    assert response.status_code == 200, response.text
    assert sandbox.find_profiles(email="old@example.com") == []
    created = api.call("POST", "/api/profile-import", {"data": {
        "type": "profile", "attributes": {"email": "old@example.com"}}})
    assert created.status_code == 201  # the old email is free again
    subscribe = {"data": {"type": "profile-subscription-bulk-create-job", "attributes": {
        "profiles": {"data": [{"type": "profile", "attributes": {
            "phone_number": "+12015550123",
            "subscriptions": {"sms": {"marketing": {"consent": "SUBSCRIBED"}}}}}]}}}}
    assert api.call("POST", "/api/profile-subscription-bulk-create-jobs",
                    subscribe).status_code == 202
    (by_phone,) = sandbox.find_profiles(phone_number="+12015550123")
    upsert = api.call("POST", "/api/profile-import", {"data": {"type": "profile", "attributes": {
        "phone_number": "+12015550123", "external_id": "P1"}}})
    assert upsert.json()["data"]["id"] == by_phone["id"]
    sandbox.reset()
    assert sandbox.find_profiles(email="new@example.com") == []
