"""A stateful stand-in for the parts of the iPaaS.com API the sync service calls.

Customers (snake_case JSON, as iPaaS.com sends them), the external-id link table, paging with
the ``X-Pagination`` header and the ``action=<op>&<PascalField>=<value>`` search form. Tests
and the demo seed it through ``put_customer``/``set_external_id`` and inject faults through
``fail_next``/``set_failure_rate``.
"""

from __future__ import annotations

import collections
import copy
import hmac
import json
import operator
import random
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from sandbox.httpserver import Handler, Request, Response, SandboxServer
from sandbox.ipaas_transactions import TRANSACTIONS_BASE, TransactionStore

DEFAULT_PAGE_SIZE = 100
_LINK_FIELDS = ("table_name", "system_id", "external_id", "internal_id")
# Query parameters of the list endpoint that are not field filters.
_LIST_CONTROL_PARAMS = frozenset({"pagenumber", "pagesize", "action", "trackingguid"})
# PascalCase filter names whose JSON key is not their plain snake_case form (the C# model
# calls `updated_datetime` UpdateDateTime).
_FILTER_ALIASES = {
    "updatedatetime": "updated_datetime",
    "updateddatetime": "updated_datetime",
    "createddatetime": "created_datetime",
}


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _id_order(customer_id: str) -> tuple[int, int, str]:
    """Numeric ids in numeric order, then any others alphabetically."""
    return (0, int(customer_id), "") if customer_id.isdigit() else (1, 0, customer_id)


def _snake_case(pascal: str) -> str:
    alias = _FILTER_ALIASES.get(pascal.lower())
    if alias is not None:
        return alias
    return re.sub(r"(?<!^)(?=[A-Z])", "_", pascal).lower()


def _comparable(value: Any) -> tuple[int, Any]:
    """Datetimes compare as instants whatever their spelling; everything else as text."""
    text = "" if value is None else str(value)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return (1, text.lower())
    return (0, parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC))


# Filter actions the list endpoint understands; add operators here as the service needs them
# (reconcile filters on the update time with `greaterthan`).
FILTER_ACTIONS: dict[str, Callable[[Any, Any], bool]] = {
    "equals": operator.eq, "notequals": operator.ne,
    "greaterthan": operator.gt, "greaterthanorequal": operator.ge,
    "lessthan": operator.lt, "lessthanorequal": operator.le,
}


def _matches(check: Callable[[Any, Any], bool], actual: Any, wanted: str) -> bool:
    (actual_kind, left), (wanted_kind, right) = _comparable(actual), _comparable(wanted)
    return actual_kind == wanted_kind and check(left, right)


@dataclass
class _Scripted:
    response: Response
    remaining: int
    endpoint: str | None


def _error(status: int, message: str) -> Response:
    return Response(status, {"status": status, "message": message})


class IpaasSandbox:
    """iPaaS.com customers API on a loopback port; ``server.requests`` records every call."""

    def __init__(self, token: str = "ipaas-sandbox-token", system_id: str = "4242") -> None:
        self.token = token
        self.system_id = str(system_id)
        self.server = SandboxServer()
        self.call_counts: collections.Counter[str] = collections.Counter()
        self._lock = threading.RLock()
        self._customers: dict[str, dict[str, Any]] = {}
        self.transactions = TransactionStore(self._lock)
        self._ordered_ids: list[str] | None = None
        # (system id, lower-cased table name, internal id) → external id
        self._links: dict[tuple[str, str, str], str] = {}
        self._scripted: list[_Scripted] = []
        self.updates: list[str] = []  # customer ids, one per accepted update (PUT)
        # Real list answers carry X-Pagination; switch it off to test clients without it.
        self.pagination_header = True
        # Switch the update-time filter off to exercise reconcile's full-scan path: the list
        # then answers a filter on the update time with `unsupported_filter_status`, or,
        # when that is None, ignores the filter and lists everything.
        self.update_filter_supported = True
        self.unsupported_filter_status: int | None = 400
        self._failure_rate = 0.0
        self._failure_status = 503
        self._random = random.Random(0)
        self._register_routes()

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> IpaasSandbox:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> IpaasSandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return self.server.url

    # -- state for tests and the demo --------------------------------------------------

    def put_customer(self, customer: dict[str, Any]) -> None:
        stored = copy.deepcopy(customer)
        stored.setdefault("updated_datetime", _now_iso())
        with self._lock:
            key = str(customer["id"])
            if key not in self._customers:
                self._ordered_ids = None
            self._customers[key] = stored

    def put_transaction(self, transaction: dict[str, Any]) -> None:
        self.transactions.put(transaction)

    def remove_customer(self, customer_id: str) -> None:
        with self._lock:
            self._customers.pop(str(customer_id), None)
            self._ordered_ids = None

    def customer(self, customer_id: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._customers.get(str(customer_id))
            return copy.deepcopy(found) if found is not None else None

    def external_id(self, internal_id: str, table: str = "customer") -> str | None:
        with self._lock:
            return self._links.get(self._link_key(self.system_id, table, internal_id))

    def set_external_id(self, internal_id: str, external_id: str, table: str = "customer") -> None:
        with self._lock:
            self._links[self._link_key(self.system_id, table, internal_id)] = external_id

    def fail_next(self, status: int = 503, count: int = 1, endpoint: str | None = None) -> None:
        """Answer the next ``count`` calls (to ``endpoint`` only, if named) with ``status``."""
        self.answer_next(_error(status, "injected fault"), count=count, endpoint=endpoint)

    def answer_next(
        self, response: Response, count: int = 1, endpoint: str | None = None
    ) -> None:
        """Answer the next ``count`` calls (to ``endpoint`` only, if named) with ``response``,
        before the token check, as a gateway in front of iPaaS.com would."""
        with self._lock:
            self._scripted.append(_Scripted(response, count, endpoint))

    def set_failure_rate(self, rate: float, status: int = 503, seed: int = 0) -> None:
        """Fail that fraction of calls at random (seeded, so a run is reproducible)."""
        with self._lock:
            self._failure_rate, self._failure_status = rate, status
            self._random = random.Random(seed)

    def reset(self) -> None:
        with self._lock:
            self._customers.clear()
            self._ordered_ids = None
            self.transactions.clear()
            self._links.clear()
            self._scripted.clear()
            self.updates.clear()
            self.pagination_header = True
            self.update_filter_supported = True
            self.unsupported_filter_status = 400
            self._failure_rate = 0.0
            self.call_counts.clear()
        self.server.requests.clear()

    # -- routing -----------------------------------------------------------------------

    def _register_routes(self) -> None:
        base = "/customers/v2"
        routes: list[tuple[str, str, str, Handler]] = [
            ("GET", f"{base}/Customer/{{id}}", "get_customer", self._get_customer),
            ("PUT", f"{base}/Customer/{{id}}", "update_customer", self._update_customer),
            ("GET", f"{base}/Customers", "list_customers", self._list_customers),
            ("GET", f"{base}/External/LookupExternal/{{id}}/{{system_id}}/{{table}}",
             "lookup_external", self._lookup_external),
            ("POST", f"{base}/External/UpdateExternalId", "update_external_id",
             self._update_external_id),
            ("GET", f"{TRANSACTIONS_BASE}/Transaction/{{id}}", "get_transaction",
             self.transactions.get_transaction),
            ("GET", f"{TRANSACTIONS_BASE}/Transactions", "list_transactions",
             self.transactions.list_transactions),
        ]
        for method, pattern, name, handler in routes:
            self.server.route(method, pattern, self._guarded(name, handler))

    def _guarded(self, endpoint: str, handler: Handler) -> Handler:
        """Count the call, then apply injected faults and the bearer-token check."""

        def serve(request: Request) -> Response:
            with self._lock:
                self.call_counts[endpoint] += 1
                scripted = self._take_scripted(endpoint)
            if scripted is not None:
                return scripted
            if not self._authorized(request):
                return _error(401, "Unauthorized")
            request.params = {k: unquote(v) for k, v in request.params.items()}
            return handler(request)

        return serve

    def _take_scripted(self, endpoint: str) -> Response | None:
        for entry in self._scripted:
            if entry.endpoint in (None, endpoint):
                entry.remaining -= 1
                if entry.remaining <= 0:
                    self._scripted.remove(entry)
                return entry.response
        if self._failure_rate and self._random.random() < self._failure_rate:
            return _error(self._failure_status, "injected fault")
        return None

    def _authorized(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, presented = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            presented.strip().encode(), self.token.encode()
        )

    # -- endpoints ---------------------------------------------------------------------

    def _get_customer(self, request: Request) -> Response:
        found = self.customer(request.params["id"])
        if found is None:
            return _error(404, "Customer not found")
        return Response(200, found)

    def _update_customer(self, request: Request) -> Response:
        """Replace a customer with the body (the customer as read, changed). Like iPaaS.com
        this sends no webhook by itself: a test that wants the customer/updated hook iPaaS.com
        would send posts it to the receiver."""
        customer_id = request.params["id"]
        try:
            body = request.json()
        except ValueError:
            return _error(400, "body is not JSON")
        if not isinstance(body, dict):
            return _error(400, "body must be an object")
        if body.get("id") is not None and str(body["id"]) != customer_id:
            return _error(400, "id in the body must match the id in the URL")
        fields = body.get("custom_fields")
        if fields is not None and not (isinstance(fields, list) and all(
                isinstance(f, dict) and f.get("custom_field_name") for f in fields)):
            return _error(400, "custom_fields must be a list of {custom_field_name, value}")
        with self._lock:
            if customer_id not in self._customers:
                return _error(404, "Customer not found")
            stored = copy.deepcopy(body)
            stored["id"] = self._customers[customer_id].get("id", customer_id)
            stored["updated_datetime"] = _now_iso()
            self._customers[customer_id] = stored
            self.updates.append(customer_id)
        return Response(200, copy.deepcopy(stored))

    def _list_customers(self, request: Request) -> Response:
        query = request.query
        try:
            page_number = int(query.get("pageNumber", "1"))
            page_size = int(query.get("pageSize", str(DEFAULT_PAGE_SIZE)))
        except ValueError:
            return _error(400, "pageNumber and pageSize must be integers")
        if page_number < 1 or page_size < 1:
            return _error(400, "pageNumber and pageSize must be positive")
        update_filters = [k for k in query if _snake_case(k) == "updated_datetime"]
        if update_filters and not self.update_filter_supported:
            if self.unsupported_filter_status is not None:
                return _error(self.unsupported_filter_status, "unknown filter field")
            query = {k: v for k, v in query.items() if k not in update_filters}
        matches = self._filtered(query)
        if matches is None:
            return _error(400, "unknown filter action")
        total_pages = -(-len(matches) // page_size)
        start = (page_number - 1) * page_size
        with self._lock:
            page = [copy.deepcopy(self._customers[key]) for key in matches[start:start + page_size]
                    if key in self._customers]
        pagination = {
            "current_Page": page_number,
            "total_Pages": total_pages,
            "page_Size": page_size,
            "total_Count": len(matches),
        }
        headers = {"X-Pagination": json.dumps(pagination)} if self.pagination_header else {}
        return Response(200, page, headers=headers)

    def _filtered(self, query: dict[str, str]) -> list[str] | None:
        """Ids, in id order, of customers matching every filter; None for an unknown action."""
        filters = {k: v for k, v in query.items() if k.lower() not in _LIST_CONTROL_PARAMS}
        check = FILTER_ACTIONS.get(query.get("action", "equals").lower())
        if check is None:
            return None
        with self._lock:
            if self._ordered_ids is None:  # sorted once per change, not once per page
                self._ordered_ids = sorted(self._customers, key=_id_order)
            ordered = self._ordered_ids
            if not filters:
                return ordered
            return [
                key
                for key in ordered
                if all(_matches(check, self._customers[key].get(_snake_case(name)), wanted)
                       for name, wanted in filters.items())
            ]

    def _lookup_external(self, request: Request) -> Response:
        params = request.params
        with self._lock:
            linked = self._links.get(
                self._link_key(params["system_id"], params["table"], params["id"])
            )
        if linked is None:
            return _error(404, "External id not found")
        # iPaaS.com answers with a bare JSON string, quotes and escapes included.
        return Response(200, json.dumps(linked))

    def _update_external_id(self, request: Request) -> Response:
        try:
            body = request.json()
        except ValueError:
            return _error(400, "body is not JSON")
        if not isinstance(body, dict):
            return _error(400, "body must be an object")
        missing = [f for f in _LINK_FIELDS if body.get(f) in (None, "")]
        if missing:
            return _error(400, "missing fields: " + ", ".join(missing))
        key = self._link_key(body["system_id"], body["table_name"], body["internal_id"])
        with self._lock:
            self._links[key] = str(body["external_id"])
        return Response(200, {f: body[f] for f in _LINK_FIELDS})

    @staticmethod
    def _link_key(system_id: object, table: str, internal_id: object) -> tuple[str, str, str]:
        # Table names are matched without regard to case ("customer" vs "Customer").
        return (str(system_id), table.lower(), str(internal_id))
