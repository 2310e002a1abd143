"""IpaasClient against the real iPaaS.com sandbox on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from sandbox.httpserver import Response
from sandbox.ipaas_sandbox import IpaasSandbox
from worker.adapters.http import HttpAdapter
from worker.adapters.ipaas import IpaasClient, parse_external_id, parse_pagination
from worker.core import reasons
from worker.core.errors import FinalError, NotFoundError, RetryableError

TOKEN = "client-test-token-5f1e"
SYSTEM_ID = "4242"


@pytest.fixture(scope="module")
def running_sandbox() -> Iterator[IpaasSandbox]:
    # One server per module: stopping one waits out the server's poll interval.
    with IpaasSandbox(token=TOKEN, system_id=SYSTEM_ID) as running:
        yield running


@pytest.fixture
def sandbox(running_sandbox: IpaasSandbox) -> IpaasSandbox:
    running_sandbox.reset()
    return running_sandbox


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as opened:
        yield opened


def make_client(
    sandbox: IpaasSandbox,
    session: requests.Session,
    token: str = TOKEN,
    client_id: str | None = None,
) -> IpaasClient:
    return IpaasClient(HttpAdapter(session, timeout=5), sandbox.url + "/", token, SYSTEM_ID,
                       client_id=client_id)


@pytest.fixture
def client(sandbox: IpaasSandbox, session: requests.Session) -> IpaasClient:
    return make_client(sandbox, session)


def customer(customer_id: int) -> dict[str, object]:
    return {
        "id": customer_id,
        "email_address": f"person{customer_id}@example.com",
        "addresses": [{"address_1": "1 Main St", "is_primary_billing": True}],
        "custom_fields": [{"id": "1", "custom_field_name": "SubscribeProfile", "value": "true"}],
    }


# -- get_customer ----------------------------------------------------------------------


def test_get_customer_returns_the_stored_customer(
    sandbox: IpaasSandbox, client: IpaasClient
) -> None:
    sandbox.put_customer(customer(55260))

    fetched = client.get_customer("55260")

    assert fetched["id"] == 55260
    assert fetched["addresses"][0]["is_primary_billing"] is True
    sent = sandbox.server.requests[-1]
    assert sent.path == "/customers/v2/Customer/55260"
    assert sent.headers["authorization"] == f"Bearer {TOKEN}"
    assert sent.headers["accept"] == "application/json"
    assert "x-client-id" not in sent.headers


def test_get_unknown_customer_raises_not_found_with_its_reason(client: IpaasClient) -> None:
    with pytest.raises(NotFoundError) as caught:
        client.get_customer("999")

    assert caught.value.reason == reasons.CUSTOMER_NOT_FOUND


def test_customer_ids_are_quoted_into_one_path_segment(
    sandbox: IpaasSandbox, client: IpaasClient
) -> None:
    sandbox.put_customer({"id": "A/7 b"})

    assert client.get_customer("A/7 b")["id"] == "A/7 b"
    assert sandbox.server.requests[-1].path == "/customers/v2/Customer/A%2F7%20b"


def test_bad_token_is_final_and_never_echoed(
    sandbox: IpaasSandbox, session: requests.Session
) -> None:
    wrong_token = "wrong-token-zz9"
    bad = make_client(sandbox, session, token=wrong_token)
    sandbox.put_customer(customer(1))

    with pytest.raises(FinalError) as caught:
        bad.get_customer("1")

    message = str(caught.value)
    assert "unauthorized" in message and "IPAAS_API_TOKEN" in message
    assert wrong_token not in message and TOKEN not in message
    assert wrong_token not in repr(bad)
    assert not isinstance(caught.value, NotFoundError)


def test_other_4xx_is_final_naming_operation_and_status_not_body(
    sandbox: IpaasSandbox, client: IpaasClient
) -> None:
    sandbox.put_customer(customer(1))
    sandbox.fail_next(status=422, endpoint="get_customer")

    with pytest.raises(FinalError) as caught:
        client.get_customer("1")

    assert str(caught.value) == "ipaas get_customer: HTTP 422"


def test_a_5xx_is_retryable_and_the_next_call_succeeds(
    sandbox: IpaasSandbox, client: IpaasClient
) -> None:
    sandbox.put_customer(customer(1))
    sandbox.fail_next(status=503, count=1)

    with pytest.raises(RetryableError):
        client.get_customer("1")
    assert client.get_customer("1")["id"] == 1
    assert sandbox.call_counts["get_customer"] == 2


def test_a_non_json_success_body_is_retryable(
    sandbox: IpaasSandbox, client: IpaasClient
) -> None:
    sandbox.answer_next(Response(200, "<html>proxy</html>", content_type="text/html"))

    with pytest.raises(RetryableError) as caught:
        client.get_customer("1")

    assert "proxy" not in str(caught.value)


def test_client_id_header_is_sent_when_configured(
    sandbox: IpaasSandbox, session: requests.Session
) -> None:
    sandbox.put_customer(customer(1))
    with_id = make_client(sandbox, session, client_id="company-client-9")

    with_id.get_customer("1")
    with_id.lookup_external_id("1")
    list(with_id.iter_customers())

    assert [r.headers.get("x-client-id") for r in sandbox.server.requests] == [
        "company-client-9"] * 3


# -- external ids ------------------------------------------------------------------------


def test_lookup_linked_and_not_linked(sandbox: IpaasSandbox, client: IpaasClient) -> None:
    sandbox.set_external_id("5", "01HXYZPROFILE")

    assert client.lookup_external_id("5") == "01HXYZPROFILE"
    assert client.lookup_external_id("6") is None
    assert sandbox.server.requests[0].path == (
        "/customers/v2/External/LookupExternal/5/4242/customer")


def test_lookup_of_a_deleted_link_is_none(sandbox: IpaasSandbox, client: IpaasClient) -> None:
    sandbox.set_external_id("5", "DELETED:01HXYZPROFILE")

    assert client.lookup_external_id("5") is None


def test_lookup_table_names_are_quoted(sandbox: IpaasSandbox, client: IpaasClient) -> None:
    sandbox.set_external_id("5", "01HCAT", table="customer category")

    assert client.lookup_external_id("5", table="customer category") == "01HCAT"
    assert sandbox.server.requests[-1].path.endswith("/4242/customer%20category")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('"01HXYZ"', "01HXYZ"),
        ("01HXYZ", "01HXYZ"),
        ('  "01HXYZ"\n', "01HXYZ"),
        ('"a\\"b"', 'a"b'),
        ('"DELETED:01HXYZ"', None),
        ("deleted:01HXYZ", None),
        ('""', None),
        ("", None),
        ("null", None),
    ],
)
def test_parse_external_id(body: str, expected: str | None) -> None:
    assert parse_external_id(body) == expected


def test_update_then_lookup_round_trip(sandbox: IpaasSandbox, client: IpaasClient) -> None:
    client.update_external_id("77", "01HPROFILE77", tracking_guid="0f8fad5b-d9cb-469f")

    assert client.lookup_external_id("77") == "01HPROFILE77"
    assert sandbox.external_id("77") == "01HPROFILE77"
    sent = next(r for r in sandbox.server.requests if r.method == "POST")
    assert sent.json() == {"table_name": "customer", "system_id": 4242,
                           "external_id": "01HPROFILE77", "internal_id": "77",
                           "tracking_guid": "0f8fad5b-d9cb-469f"}
    assert sent.headers["content-type"] == "application/json"


def test_update_replaces_an_existing_link(sandbox: IpaasSandbox, client: IpaasClient) -> None:
    sandbox.set_external_id("77", "01HOLD")

    client.update_external_id("77", "01HNEW")

    assert client.lookup_external_id("77") == "01HNEW"


def test_update_rejected_by_the_api_is_final(sandbox: IpaasSandbox, client: IpaasClient) -> None:
    with pytest.raises(FinalError) as caught:
        client.update_external_id("77", "")

    assert str(caught.value) == "ipaas update_external_id: HTTP 400"


# -- paging ------------------------------------------------------------------------------


def test_pages_of_one_hundred_over_250_customers(
    sandbox: IpaasSandbox, client: IpaasClient
) -> None:
    for customer_id in range(250, 0, -1):
        sandbox.put_customer(customer(customer_id))

    pages = list(client.iter_customers(page_size=100))

    assert [number for number, _ in pages] == [1, 2, 3]
    assert [len(batch) for _, batch in pages] == [100, 100, 50]
    ids = [c["id"] for _, batch in pages for c in batch]
    assert ids == list(range(1, 251))
    assert sandbox.call_counts["list_customers"] == 3


def test_paging_resumes_from_a_start_page(sandbox: IpaasSandbox, client: IpaasClient) -> None:
    for customer_id in range(1, 26):
        sandbox.put_customer(customer(customer_id))

    pages = list(client.iter_customers(page_size=10, start_page=2))

    assert [(n, [c["id"] for c in b]) for n, b in pages] == [
        (2, list(range(11, 21))), (3, list(range(21, 26)))]


def test_paging_streams_one_page_per_request(
    sandbox: IpaasSandbox, client: IpaasClient
) -> None:
    for customer_id in range(1, 31):
        sandbox.put_customer(customer(customer_id))

    pages = client.iter_customers(page_size=10)
    next(pages)

    assert sandbox.call_counts["list_customers"] == 1


def test_paging_an_empty_system_yields_nothing(client: IpaasClient) -> None:
    assert list(client.iter_customers()) == []


def test_paging_without_a_pagination_header_stops_at_a_short_page(
    sandbox: IpaasSandbox, client: IpaasClient
) -> None:
    for customer_id in range(1, 6):
        sandbox.put_customer(customer(customer_id))
    sandbox.pagination_header = False

    pages = list(client.iter_customers(page_size=2))

    assert [len(batch) for _, batch in pages] == [2, 2, 1]
    assert sandbox.call_counts["list_customers"] == 3


def test_paging_without_a_header_or_page_size_reads_one_page(
    sandbox: IpaasSandbox, client: IpaasClient
) -> None:
    for customer_id in range(1, 6):
        sandbox.put_customer(customer(customer_id))
    sandbox.pagination_header = False

    pages = list(client.iter_customers())

    assert [len(batch) for _, batch in pages] == [5]


def test_a_5xx_mid_paging_is_retryable(sandbox: IpaasSandbox, client: IpaasClient) -> None:
    for customer_id in range(1, 21):
        sandbox.put_customer(customer(customer_id))
    pages = client.iter_customers(page_size=10)
    assert next(pages)[0] == 1
    sandbox.fail_next(status=502)

    with pytest.raises(RetryableError):
        next(pages)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('{"current_Page": 2, "total_Pages": 3, "page_Size": 100}', (2, 3)),
        ('{"CurrentPage": 1, "TotalPages": 1}', (1, 1)),
        ('{"current_Page": "x", "total_Pages": 1}', None),
        ('{"currentpage": 1}', None),
        ("not json", None),
        ("[1, 2]", None),
        (None, None),
    ],
)
def test_parse_pagination(header: str | None, expected: tuple[int, int] | None) -> None:
    assert parse_pagination(header) == expected
