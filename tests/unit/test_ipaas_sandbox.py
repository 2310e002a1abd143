"""The iPaaS.com sandbox answers like the API it stands in for (raw HTTP, no client)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests

from sandbox.ipaas_sandbox import IpaasSandbox

TOKEN = "sandbox-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def running_sandbox() -> Iterator[IpaasSandbox]:
    # One server per module: stopping one waits out the server's poll interval.
    with IpaasSandbox(token=TOKEN, system_id="4242") as running:
        yield running


@pytest.fixture
def sandbox(running_sandbox: IpaasSandbox) -> IpaasSandbox:
    running_sandbox.reset()
    return running_sandbox


def get(
    sandbox: IpaasSandbox, path: str, params: dict[str, str | int] | None = None
) -> requests.Response:
    return requests.get(f"{sandbox.url}{path}", headers=AUTH, params=params, timeout=5)


def test_every_endpoint_requires_the_bearer_token(sandbox: IpaasSandbox) -> None:
    sandbox.put_customer({"id": 1, "email_address": "a@example.com"})
    paths = ["/customers/v2/Customer/1", "/customers/v2/Customers",
             "/customers/v2/External/LookupExternal/1/4242/customer"]
    for path in paths:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            response = requests.get(f"{sandbox.url}{path}", headers=headers, timeout=5)
            assert response.status_code == 401, (path, headers)
            assert isinstance(response.json(), dict)
    response = requests.post(f"{sandbox.url}/customers/v2/External/UpdateExternalId",
                             json={}, timeout=5)
    assert response.status_code == 401


def test_get_customer_returns_it_as_stored_and_stamps_update_time(
    sandbox: IpaasSandbox,
) -> None:
    sandbox.put_customer({"id": 55260, "first_name": "Ada", "custom_fields": []})
    sandbox.put_customer({"id": 7, "updated_datetime": "2026-01-01T00:00:00+00:00"})

    body = get(sandbox, "/customers/v2/Customer/55260").json()

    assert body["id"] == 55260 and body["first_name"] == "Ada"
    assert body["updated_datetime"]
    assert sandbox.customer("7") == {"id": 7, "updated_datetime": "2026-01-01T00:00:00+00:00"}
    assert get(sandbox, "/customers/v2/Customer/404404").status_code == 404
    sandbox.remove_customer("55260")
    assert get(sandbox, "/customers/v2/Customer/55260").status_code == 404
    assert sandbox.call_counts["get_customer"] == 3


def test_list_orders_numeric_ids_numerically_and_reports_pagination(
    sandbox: IpaasSandbox,
) -> None:
    for customer_id in (10, 2, 1, 30, 21):
        sandbox.put_customer({"id": customer_id})

    response = get(sandbox, "/customers/v2/Customers", params={"pageNumber": 2, "pageSize": 2})

    assert [c["id"] for c in response.json()] == [10, 21]
    assert json.loads(response.headers["X-Pagination"]) == {
        "current_Page": 2, "total_Pages": 3, "page_Size": 2, "total_Count": 5,
    }


def test_list_defaults_to_pages_of_one_hundred(sandbox: IpaasSandbox) -> None:
    for customer_id in range(1, 151):
        sandbox.put_customer({"id": customer_id})

    response = get(sandbox, "/customers/v2/Customers")

    assert len(response.json()) == 100
    assert json.loads(response.headers["X-Pagination"])["total_Pages"] == 2


def test_list_search_by_email_and_by_update_time(sandbox: IpaasSandbox) -> None:
    sandbox.put_customer({"id": 1, "email_address": "a@example.com",
                          "updated_datetime": "2026-01-01T00:00:00+00:00"})
    sandbox.put_customer({"id": 2, "email_address": "b@example.com",
                          "updated_datetime": "2026-03-01T00:00:00Z"})

    by_email = get(sandbox, "/customers/v2/Customers",
                   params={"action": "equals", "EmailAddress": "b@example.com"})
    since = get(sandbox, "/customers/v2/Customers",
                params={"action": "greaterthan", "UpdateDateTime": "2026-02-01T00:00:00Z"})
    unknown = get(sandbox, "/customers/v2/Customers", params={"action": "resembles", "Id": "1"})

    assert [c["id"] for c in by_email.json()] == [2]
    assert [c["id"] for c in since.json()] == [2]
    assert unknown.status_code == 400


def test_lookup_answers_a_bare_json_string_or_404(sandbox: IpaasSandbox) -> None:
    sandbox.set_external_id("5", "01HXYZPROFILE")

    linked = get(sandbox, "/customers/v2/External/LookupExternal/5/4242/customer")
    other_system = get(sandbox, "/customers/v2/External/LookupExternal/5/9999/customer")
    unlinked = get(sandbox, "/customers/v2/External/LookupExternal/6/4242/customer")

    assert linked.status_code == 200 and linked.text == '"01HXYZPROFILE"'
    assert other_system.status_code == 404
    assert unlinked.status_code == 404


def test_update_external_id_stores_the_link_and_rejects_missing_fields(
    sandbox: IpaasSandbox,
) -> None:
    url = f"{sandbox.url}/customers/v2/External/UpdateExternalId"
    link = {"table_name": "customer", "system_id": 4242, "external_id": "01HABC",
            "internal_id": "77"}

    ok = requests.post(url, json=link, headers=AUTH, timeout=5)
    incomplete = requests.post(url, json={**link, "internal_id": ""}, headers=AUTH, timeout=5)

    assert ok.status_code == 200
    assert sandbox.external_id("77") == "01HABC"
    assert incomplete.status_code == 400
    assert sandbox.call_counts["update_external_id"] == 2


def test_fail_next_answers_the_injected_status_then_recovers(sandbox: IpaasSandbox) -> None:
    sandbox.put_customer({"id": 1})
    sandbox.fail_next(status=503, count=2, endpoint="get_customer")

    statuses = [get(sandbox, "/customers/v2/Customer/1").status_code for _ in range(3)]

    assert statuses == [503, 503, 200]
    assert get(sandbox, "/customers/v2/Customers").status_code == 200


def test_failure_rate_fails_about_that_fraction(sandbox: IpaasSandbox) -> None:
    sandbox.put_customer({"id": 1})
    sandbox.set_failure_rate(0.5, status=502, seed=7)

    statuses = [get(sandbox, "/customers/v2/Customer/1").status_code for _ in range(60)]

    assert set(statuses) == {200, 502}
    assert 15 <= statuses.count(502) <= 45


def test_reset_forgets_everything(sandbox: IpaasSandbox) -> None:
    sandbox.put_customer({"id": 1})
    sandbox.set_external_id("1", "01HX")
    sandbox.fail_next(status=500, count=5)
    get(sandbox, "/customers/v2/Customer/1")

    sandbox.reset()

    assert sandbox.customer("1") is None and sandbox.external_id("1") is None
    assert sandbox.call_counts == {} and sandbox.server.requests == []
    assert get(sandbox, "/customers/v2/Customer/1").status_code == 404
