"""Where a backfill reads customers from, as a stream of (ordinal, customer).

The ordinal is the customer's 1-based position in the source; a checkpoint records the
highest ordinal fully done, so an interrupted run resumes right after it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol


class CustomerPages(Protocol):
    def iter_customers(self, page_size: int | None = None, start_page: int = 1
                       ) -> Iterator[tuple[int, list[dict[str, Any]]]]: ...


@dataclass(frozen=True)
class BadLine:
    """A line of the file that is not a JSON object (reported, never sent)."""

    line_number: int


def file_source_name(path: str) -> str:
    """A checkpoint name for a file: its real path and size, so a changed file starts over."""
    real = os.path.realpath(path)
    digest = hashlib.sha1(f"{real}:{os.path.getsize(real)}".encode()).hexdigest()[:16]
    return f"backfill:file:{digest}"


def iter_file(path: str, after: int = 0) -> Iterator[tuple[int, dict[str, Any] | BadLine]]:
    """Customers from a JSON-lines file (one customer per line, as the API returns them)."""
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if number <= after or not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                yield number, BadLine(number)
                continue
            yield number, record if isinstance(record, dict) else BadLine(number)


def iter_api(client: CustomerPages, page_size: int, after: int = 0
             ) -> Iterator[tuple[int, dict[str, Any] | BadLine]]:
    """Every customer in iPaaS.com, page by page, starting at the page holding ``after``."""
    start_page = after // page_size + 1
    for page_number, customers in client.iter_customers(page_size=page_size,
                                                        start_page=start_page):
        base = (page_number - 1) * page_size
        for index, record in enumerate(customers, start=1):
            ordinal = base + index
            if ordinal > after:
                yield ordinal, record
