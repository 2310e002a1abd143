"""Klaviyo bulk profile import jobs: start a job of up to 10,000 profiles, poll it, then read
which rows failed and which profiles it wrote.

Requests go through a ``KlaviyoClient`` (its headers, rate-limit hook and error
classification). Klaviyo validates a job's rows all-or-nothing: one bad row answers 400 for
the whole request, with a pointer naming the row, and ``BulkRowsRejected`` carries those row
indexes so the caller can drop them and send the rest again. Messages and logs name
operations, statuses, row indexes and field names only, never values.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests

from worker.adapters.klaviyo import errors as kerrors
from worker.adapters.klaviyo.client import KlaviyoClient
from worker.adapters.klaviyo.payloads import any_filter, chunks, unique, without_nones
from worker.adapters.klaviyo.responses import data_items, json_object, next_link
from worker.core.classify import Verdict
from worker.core.errors import FieldError, FinalError, KlaviyoRejected, RetryableError

log = logging.getLogger(__name__)

JOBS_PATH = "/api/profile-bulk-import-jobs"
JOB_TYPE = "profile-bulk-import-job"
MAX_PROFILES_PER_JOB = 10_000
MAX_BODY_BYTES = 5_000_000
# Room for the request envelope around the rows, list relationships included.
ENVELOPE_HEADROOM = 16_384
PAGE_SIZE = 100  # Klaviyo's maximum for the job's errors and profiles
MAX_PAGES = 1_000  # 100,000 rows: a cursor loop on Klaviyo's side must not hang a worker
FINISHED = frozenset({"complete", "cancelled"})
_ROW_POINTER = re.compile(r"^/data/attributes/profiles/data/(\d+)(?:/(.*))?$")


@dataclass(frozen=True)
class ImportJob:
    id: str
    status: str  # queued | processing | complete | cancelled
    total_count: int
    completed_count: int
    failed_count: int

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


@dataclass(frozen=True)
class ImportRowError:
    """One row Klaviyo refused. ``original_payload`` holds that row's attributes (as sent,
    or as Klaviyo echoed them back) so the caller can tell which record it was."""

    row_index: int | None
    field: str | None
    code: str
    original_payload: dict[str, Any] | None


class BulkRowsRejected(KlaviyoRejected):
    """Raised when Klaviyo refused a whole job because of the rows listed in ``rows``;
    without those rows the request can be sent again."""

    def __init__(self, rows: list[ImportRowError], errors: list[FieldError]) -> None:
        count = len({row.row_index for row in rows})
        super().__init__(f"bulk_import_profiles: HTTP 400, {count} rows rejected",
                         status=400, errors=errors)
        self.rows = rows


class KlaviyoBulkImports:
    def __init__(self, client: KlaviyoClient) -> None:
        self._client = client

    def start_job(self, profiles: list[dict[str, Any]], *,
                  list_ids: list[str] | None = None) -> ImportJob:
        """Start one job upserting ``profiles`` (attribute dicts; ``None`` values are left
        out, Klaviyo's bulk import cannot clear a field anyway)."""
        operation = "bulk_import_profiles"
        response, verdict = self._client.request(
            operation, "POST", JOBS_PATH, body=job_document(profiles, list_ids or []))
        if verdict.verdict is not Verdict.OK:
            raise _start_error(operation, response, profiles)
        return _job(operation, response)

    def get_job(self, job_id: str) -> ImportJob:
        operation = "get_bulk_import_profiles_job"
        response, verdict = self._client.request(operation, "GET", _job_path(job_id))
        if verdict.verdict is not Verdict.OK:
            raise _rejected(operation, response)
        return _job(operation, response)

    def wait(self, job_id: str, *, poll_seconds: float = 1.0, max_poll_seconds: float = 30.0,
             timeout: float = 3600.0, sleep: Callable[[float], None] = time.sleep) -> ImportJob:
        """Poll until the job is complete or cancelled, doubling the pause between polls
        up to ``max_poll_seconds``. ``timeout`` counts the time slept, so a fake ``sleep``
        makes this deterministic; past it, RetryableError (the job may still finish)."""
        pause, slept = poll_seconds, 0.0
        while True:
            job = self.get_job(job_id)
            if job.finished:
                return job
            if slept + pause > timeout:
                raise RetryableError(
                    f"get_bulk_import_profiles_job: job still {job.status} after {slept:.0f}s")
            sleep(pause)
            slept += pause
            pause = min(pause * 2, max_poll_seconds)

    def iter_errors(self, job_id: str) -> Iterator[ImportRowError]:
        for item in self._pages("get_errors_for_bulk_import_profiles_job",
                                f"{_job_path(job_id)}/import-errors", {}):
            attributes = item.get("attributes")
            if isinstance(attributes, dict):
                yield _import_error(attributes)

    def iter_profiles(self, job_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """(Klaviyo profile id, attributes) of every profile the job created or updated."""
        params = {"fields[profile]": "email,phone_number,external_id"}
        for item in self._pages("get_profiles_for_bulk_import_profiles_job",
                                f"{_job_path(job_id)}/profiles", params):
            profile_id, attributes = item.get("id"), item.get("attributes")
            if isinstance(profile_id, str) and profile_id:
                yield profile_id, attributes if isinstance(attributes, dict) else {}

    def profile_ids_by_external_id(self, external_ids: list[str]) -> dict[str, str]:
        """external_id → Klaviyo profile id, 100 per ``get_profiles`` call.

        The backfill reads its links back this way rather than through the job's profile
        listing: ``get_profiles`` is L tier (750/min), the job listing M tier (150/min), so a
        100,000-customer backfill spends 80 s on this instead of 400 s.
        """
        found: dict[str, str] = {}
        for chunk in chunks(unique(external_ids), PAGE_SIZE):
            params = {"filter": any_filter("external_id", chunk),
                      "fields[profile]": "external_id"}
            for item in self._pages("get_profiles", "/api/profiles", params):
                profile_id, attributes = item.get("id"), item.get("attributes") or {}
                if not isinstance(attributes, dict):
                    continue
                external_id = attributes.get("external_id")
                if isinstance(profile_id, str) and isinstance(external_id, str):
                    found.setdefault(external_id, profile_id)
        return found

    def _pages(self, operation: str, path: str, params: dict[str, Any]
               ) -> Iterator[dict[str, Any]]:
        params = {**params, "page[size]": PAGE_SIZE}
        for _ in range(MAX_PAGES):
            response, verdict = self._client.request(operation, "GET", path, params=params)
            if verdict.verdict is not Verdict.OK:
                raise _rejected(operation, response)
            yield from data_items(response)
            following = next_link(response)
            if following is None:
                return
            # Follow the cursor on our own base URL: the key is never sent to another host.
            path, params = following
        log.warning("%s: stopped after %d pages", operation, MAX_PAGES)


def job_document(profiles: list[dict[str, Any]], list_ids: list[str]) -> dict[str, Any]:
    data: dict[str, Any] = {
        "type": JOB_TYPE,
        "attributes": {"profiles": {"data": [_row(attributes) for attributes in profiles]}},
    }
    if list_ids:
        # Under data, next to attributes: inside each profile Klaviyo ignores it.
        data["relationships"] = {"lists": {"data": [{"type": "list", "id": list_id}
                                                    for list_id in list_ids]}}
    return {"data": data}


def chunk_profiles(profiles: Iterable[dict[str, Any]], *,
                   max_count: int = MAX_PROFILES_PER_JOB,
                   max_bytes: int = MAX_BODY_BYTES) -> Iterator[list[dict[str, Any]]]:
    """Split ``profiles`` into jobs Klaviyo accepts: at most ``max_count`` rows and a request
    body of at most ``max_bytes``, the envelope's headroom included. A row too big for any
    job goes alone, so that only its own job is refused."""
    budget = max_bytes - ENVELOPE_HEADROOM
    chunk: list[dict[str, Any]] = []
    size = 0
    for attributes in profiles:
        row_bytes = len(_encoded(_row(attributes))) + 1  # the comma between rows
        if chunk and (len(chunk) >= max_count or size + row_bytes > budget):
            yield chunk
            chunk, size = [], 0
        chunk.append(attributes)
        size += row_bytes
    if chunk:
        yield chunk


# -- reading answers -----------------------------------------------------------------------


def _row(attributes: dict[str, Any]) -> dict[str, Any]:
    return {"type": "profile", "attributes": without_nones(attributes)}


def _encoded(value: Any) -> bytes:
    # As HttpAdapter serialises bodies, so the size counted is the size sent.
    return json.dumps(value, separators=(",", ":")).encode()


def _job_path(job_id: str) -> str:
    return f"{JOBS_PATH}/{quote(job_id, safe='')}"


def _job(operation: str, response: requests.Response) -> ImportJob:
    data = json_object(response).get("data")
    data = data if isinstance(data, dict) else {}
    job_id = data.get("id")
    if not isinstance(job_id, str) or not job_id:
        # Seen in the wild: an accepted upload without a job id. Nothing to poll.
        raise FinalError(f"{operation}: HTTP {response.status_code} without a job id")
    attributes = data.get("attributes")
    attributes = attributes if isinstance(attributes, dict) else {}
    status = attributes.get("status")
    return ImportJob(id=job_id, status=status if isinstance(status, str) else "queued",
                     total_count=_count(attributes.get("total_count")),
                     completed_count=_count(attributes.get("completed_count")),
                     failed_count=_count(attributes.get("failed_count")))


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _row_location(pointer: Any) -> tuple[int | None, str | None]:
    """The row index and the field a pointer names, e.g. ``.../data/3/attributes/email``
    → (3, "email"); (None, None) when it names no row."""
    match = _ROW_POINTER.match(pointer) if isinstance(pointer, str) else None
    if match is None:
        return None, None
    rest = [part for part in (match[2] or "").split("/") if part]
    if rest[:1] == ["attributes"]:
        rest = rest[1:]
    return int(match[1]), (rest[0] if rest else None)


def _pointer(error: dict[str, Any]) -> Any:
    source = error.get("source")
    return source.get("pointer") if isinstance(source, dict) else None


def _import_error(attributes: dict[str, Any]) -> ImportRowError:
    row_index, field = _row_location(_pointer(attributes))
    code = attributes.get("code")
    return ImportRowError(row_index=row_index, field=field,
                          code=code if isinstance(code, str) else "error",
                          original_payload=_payload_attributes(attributes.get("original_payload")))


def _payload_attributes(payload: Any) -> dict[str, Any] | None:
    """The row's attributes, whether Klaviyo echoes the whole profile object or only them."""
    if not isinstance(payload, dict):
        return None
    inner = payload.get("attributes")
    return inner if payload.get("type") == "profile" and isinstance(inner, dict) else payload


def _start_error(operation: str, response: requests.Response,
                 profiles: list[dict[str, Any]]) -> KlaviyoRejected:
    errors = kerrors.error_objects(response)
    rows = [_row_location(_pointer(error)) for error in errors]
    if response.status_code != 400 or not rows or any(index is None for index, _ in rows):
        return _rejected(operation, response)
    rejected = [
        ImportRowError(row_index=index, field=field,
                       code=str(error.get("code")) if isinstance(error.get("code"), str)
                       else "invalid",
                       original_payload=profiles[index] if index is not None
                       and index < len(profiles) else None)
        for (index, field), error in zip(rows, errors, strict=True)
    ]
    indexes = sorted({row.row_index for row in rejected if row.row_index is not None})
    log.warning("%s: HTTP 400 rows=%d first=%s fields=%s klaviyo_request_ids=%s", operation,
                len(indexes), indexes[:20], sorted({row.field or "row" for row in rejected}),
                kerrors.request_ids(errors)[:20])
    return BulkRowsRejected(rejected, kerrors.field_errors(errors))


def _rejected(operation: str, response: requests.Response) -> KlaviyoRejected:
    errors = kerrors.error_objects(response)
    log.warning("%s: HTTP %s codes=%s klaviyo_request_ids=%s", operation,
                response.status_code, sorted(kerrors.error_codes(errors)),
                kerrors.request_ids(errors))
    return KlaviyoRejected(f"{operation}: HTTP {response.status_code}",
                           status=response.status_code, errors=kerrors.field_errors(errors))
