"""The iPaaS.com API client: customers, the external-id link table and customer paging.

Every call goes through ``HttpAdapter``, which already raises ``RetryableError`` for
transport failures, 429 and 5xx. This module decides what the remaining answers mean for
each operation. Messages name the operation and the status only: never the token, never a
response body (bodies carry personal data).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import quote

import requests

from worker.adapters.http import HttpAdapter
from worker.core import reasons
from worker.core.classify import Classification, Verdict
from worker.core.errors import FinalError, NotFoundError, RetryableError
from worker.core.reconcile import format_time

CUSTOMERS_API = "customers/v2"
TRANSACTION_PATH = "transactions/v2/Transaction/{id}"
TRANSACTIONS_PATH = "transactions/v2/Transactions"
DELETED_LINK_PREFIX = "DELETED:"
UNAUTHORIZED_MESSAGE = "ipaas: unauthorized (check IPAAS_API_TOKEN)"
# How a list endpoint says it does not know a filter field or operator.
FILTER_REFUSED_STATUSES = (400, 422)


class FilterNotAccepted(FinalError):
    """The list endpoint refused a field filter: the caller has to page through everything."""


def _segment(value: str) -> str:
    """One URL path segment: slashes and spaces in ids must not change the route."""
    return quote(str(value), safe="")


def parse_external_id(body: str) -> str | None:
    """The external id in a LookupExternal answer: a bare string, maybe JSON-quoted.

    Empty, ``null`` and links of deleted records (``DELETED:`` prefix) mean "not linked".
    """
    text = body.strip()
    if text.startswith('"'):
        try:
            decoded = json.loads(text)
        except ValueError:
            decoded = text.strip('"')
        text = decoded.strip() if isinstance(decoded, str) else ""
    if not text or text == "null" or text.upper().startswith(DELETED_LINK_PREFIX):
        return None
    return text


def parse_pagination(header: str | None) -> tuple[int, int] | None:
    """``(current_page, total_pages)`` from an ``X-Pagination`` header, if it is usable."""
    if not header:
        return None
    try:
        data = json.loads(header)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    # The development utility reads `current_Page`/`total_Pages`; accept any casing and
    # with or without the underscore, since the spelling is not documented.
    keys = {str(k).lower().replace("_", ""): v for k, v in data.items()}
    try:
        return int(keys["currentpage"]), int(keys["totalpages"])
    except (KeyError, TypeError, ValueError):
        return None


def _wire_system_id(system_id: str) -> int | str:
    # iPaaS.com models system_id as a long; send a number when the id is one.
    return int(system_id) if system_id.isdigit() else system_id


class IpaasClient:
    def __init__(
        self,
        http: HttpAdapter,
        base_url: str,
        token: str,
        system_id: str,
        client_id: str | None = None,
        *,
        transaction_path: str = TRANSACTION_PATH,
        transactions_path: str = TRANSACTIONS_PATH,
    ) -> None:
        self.http = http
        # Inferred from the customers API (reference/ipaas.md), hence configurable.
        self.transaction_path = transaction_path.strip("/")
        self.transactions_path = transactions_path.strip("/")
        self.base_url = base_url.rstrip("/")
        self.system_id = str(system_id)
        self._headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        if client_id:
            self._headers["X-Client-Id"] = client_id

    def __repr__(self) -> str:  # keeps the token out of tracebacks and logs
        return f"IpaasClient(base_url={self.base_url!r}, system_id={self.system_id!r})"

    def get_customer(self, customer_id: str) -> dict[str, Any]:
        """The customer as iPaaS.com stores it; ``NotFoundError`` when the id is unknown."""
        return self._get_record("get_customer",
                                f"{CUSTOMERS_API}/Customer/{_segment(customer_id)}",
                                "customer", reasons.CUSTOMER_NOT_FOUND)

    def update_customer(self, customer_id: str, customer: dict[str, Any]) -> None:
        """Replace the customer with ``customer`` (the record as read, changed): how
        consent-sync sets SubscribeProfile. ``NotFoundError`` when the id is unknown."""
        operation = "update_customer"
        response, verdict = self._send(operation, "PUT",
                                       f"{CUSTOMERS_API}/Customer/{_segment(customer_id)}",
                                       json_body=customer)
        if verdict.verdict is Verdict.NOT_FOUND:
            raise NotFoundError(f"ipaas {operation}: customer not found",
                                reason=reasons.CUSTOMER_NOT_FOUND)
        self._raise_unless_ok(operation, response, verdict)

    def _get_record(self, operation: str, path: str, what: str, not_found: str
                    ) -> dict[str, Any]:
        """GET one record; a 404 is ``NotFoundError`` with the ``not_found`` reason."""
        response, verdict = self._send(operation, "GET", path)
        if verdict.verdict is Verdict.NOT_FOUND:
            raise NotFoundError(f"ipaas {operation}: {what} not found", reason=not_found)
        self._raise_unless_ok(operation, response, verdict)
        record = self._json(operation, response)
        if not isinstance(record, dict):
            raise FinalError(f"ipaas {operation}: unexpected response shape")
        return record

    def lookup_external_id(self, customer_id: str, table: str = "customer") -> str | None:
        """The external id linked for this subscription, or None when not (or no longer) linked."""
        operation = "lookup_external_id"
        path = (
            f"{CUSTOMERS_API}/External/LookupExternal/"
            f"{_segment(customer_id)}/{_segment(self.system_id)}/{_segment(table)}"
        )
        response, verdict = self._send(operation, "GET", path)
        if verdict.verdict is Verdict.NOT_FOUND:
            return None
        self._raise_unless_ok(operation, response, verdict)
        return parse_external_id(response.text)

    def update_external_id(
        self,
        customer_id: str,
        external_id: str,
        table: str = "customer",
        tracking_guid: str | None = None,
    ) -> None:
        """Create or replace the link from the iPaaS.com record to ``external_id``."""
        operation = "update_external_id"
        body: dict[str, Any] = {
            "table_name": table,
            "system_id": _wire_system_id(self.system_id),
            "external_id": external_id,
            "internal_id": str(customer_id),
        }
        if tracking_guid:
            body["tracking_guid"] = tracking_guid
        response, verdict = self._send(
            operation, "POST", f"{CUSTOMERS_API}/External/UpdateExternalId", json_body=body
        )
        self._raise_unless_ok(operation, response, verdict)

    def iter_customers(
        self,
        page_size: int | None = None,
        start_page: int = 1,
        *,
        since: datetime | None = None,
        filter_action: str = "greaterthan",
        filter_field: str = "UpdateDateTime",
    ) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        """Yield ``(page_number, customers)`` one page at a time, from ``start_page`` on.

        Follows ``X-Pagination`` to the last page. Without a usable header it goes on only
        while pages come back full, so a server that ignores ``pageNumber`` cannot loop us.
        With ``since``, lists only customers updated after it (``action=<filter_action>&
        <filter_field>=<time>``); a server that refuses the filter raises FilterNotAccepted.
        """
        return self._pages("list_customers", f"{CUSTOMERS_API}/Customers", page_size,
                           start_page, since, filter_action, filter_field)

    def _pages(
        self,
        operation: str,
        path: str,
        page_size: int | None,
        start_page: int,
        since: datetime | None,
        filter_action: str,
        filter_field: str,
    ) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        page = start_page
        while True:
            params: dict[str, Any] = {"pageNumber": page}
            if page_size is not None:
                params["pageSize"] = page_size
            if since is not None:
                params["action"] = filter_action
                params[filter_field] = format_time(since)
            response, verdict = self._send(operation, "GET", path, params=params)
            if since is not None and response.status_code in FILTER_REFUSED_STATUSES:
                raise FilterNotAccepted(
                    f"ipaas {operation}: filter {filter_action} {filter_field} refused "
                    f"(HTTP {response.status_code})"
                )
            self._raise_unless_ok(operation, response, verdict)
            records = self._json(operation, response)
            if not isinstance(records, list):
                raise FinalError(f"ipaas {operation}: unexpected response shape")
            if not records:
                return
            yield page, records
            pagination = parse_pagination(response.headers.get("X-Pagination"))
            if pagination is not None:
                current, total = pagination
                if current >= total:
                    return
            elif page_size is None or len(records) < page_size:
                return
            page += 1

    # -- transactions ------------------------------------------------------------------

    def get_transaction(self, transaction_id: str) -> dict[str, Any]:
        """The transaction (with its lines); ``NotFoundError`` when the id is unknown."""
        path = self.transaction_path.replace("{id}", _segment(transaction_id))
        return self._get_record("get_transaction", path, "transaction",
                                reasons.TRANSACTION_NOT_FOUND)

    def iter_transactions(
        self,
        page_size: int | None = None,
        start_page: int = 1,
        *,
        since: datetime | None = None,
        filter_action: str = "greaterthan",
        filter_field: str = "UpdateDateTime",
    ) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        """Yield ``(page_number, transactions)`` page by page, paging and filtering on the
        update time as iter_customers does."""
        return self._pages("list_transactions", self.transactions_path, page_size,
                           start_page, since, filter_action, filter_field)

    def _send(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
    ) -> tuple[requests.Response, Classification]:
        headers = dict(self._headers)
        if json_body is not None:
            headers["Content-Type"] = "application/json"
        return self.http.send(
            f"ipaas {operation}",
            method,
            f"{self.base_url}/{path}",
            headers=headers,
            params=params,
            json_body=json_body,
        )

    @staticmethod
    def _raise_unless_ok(
        operation: str, response: requests.Response, verdict: Classification
    ) -> None:
        if verdict.verdict is Verdict.OK:
            return
        if response.status_code in (401, 403):
            raise FinalError(UNAUTHORIZED_MESSAGE)
        raise FinalError(f"ipaas {operation}: HTTP {response.status_code}")

    @staticmethod
    def _json(operation: str, response: requests.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            # A 2xx that is not JSON is a proxy or gateway hiccup more often than a real answer.
            raise RetryableError(f"ipaas {operation}: response was not JSON") from None
