"""Transactions in the iPaaS.com sandbox: ``GET transactions/v2/Transaction/{id}`` and the
paged list ``GET transactions/v2/Transactions`` (``pageNumber``/``pageSize``, ``X-Pagination``).

Routed by ``IpaasSandbox`` behind the same bearer token and fault injection as customers.
"""

from __future__ import annotations

import copy
import json
import threading
from typing import Any

from sandbox.httpserver import Request, Response

DEFAULT_PAGE_SIZE = 100
TRANSACTIONS_BASE = "/transactions/v2"


def _order(transaction_id: str) -> tuple[int, int, str]:
    return (0, int(transaction_id), "") if transaction_id.isdigit() else (1, 0, transaction_id)


class TransactionStore:
    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock
        self._transactions: dict[str, dict[str, Any]] = {}
        self._ordered: list[str] | None = None
        self.pagination_header = True

    def put(self, transaction: dict[str, Any]) -> None:
        with self._lock:
            key = str(transaction["id"])
            if key not in self._transactions:
                self._ordered = None
            self._transactions[key] = copy.deepcopy(transaction)

    def get(self, transaction_id: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._transactions.get(str(transaction_id))
            return copy.deepcopy(found) if found is not None else None

    def remove(self, transaction_id: str) -> None:
        with self._lock:
            self._transactions.pop(str(transaction_id), None)
            self._ordered = None

    def clear(self) -> None:
        with self._lock:
            self._transactions.clear()
            self._ordered = None

    def get_transaction(self, request: Request) -> Response:
        found = self.get(request.params["id"])
        if found is None:
            return Response(404, {"status": 404, "message": "Transaction not found"})
        return Response(200, found)

    def list_transactions(self, request: Request) -> Response:
        try:
            page_number = int(request.query.get("pageNumber", "1"))
            page_size = int(request.query.get("pageSize", str(DEFAULT_PAGE_SIZE)))
        except ValueError:
            return Response(400, {"status": 400,
                                  "message": "pageNumber and pageSize must be integers"})
        if page_number < 1 or page_size < 1:
            return Response(400, {"status": 400,
                                  "message": "pageNumber and pageSize must be positive"})
        with self._lock:
            if self._ordered is None:
                self._ordered = sorted(self._transactions, key=_order)
            keys = self._ordered
            start = (page_number - 1) * page_size
            page = [copy.deepcopy(self._transactions[k]) for k in keys[start:start + page_size]]
            total = len(keys)
        pagination = {"current_Page": page_number, "total_Pages": -(-total // page_size),
                      "page_Size": page_size, "total_Count": total}
        headers = {"X-Pagination": json.dumps(pagination)} if self.pagination_header else {}
        return Response(200, page, headers=headers)
