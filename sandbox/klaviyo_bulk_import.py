"""Bulk profile import jobs: ``POST /api/profile-bulk-import-jobs`` and the job's read side
(the job, its import errors, its profiles and lists).

The create request is validated as a whole, as Klaviyo does: one bad row rejects the batch
with 400, one error per bad row, pointers ``/data/attributes/profiles/data/<i>/...``, and
nothing is imported. An accepted job is asynchronous. To keep tests deterministic it moves
on only when polled: the first GET reads ``queued``, later ones ``processing``, and the GET
after ``polls_until_complete`` polls runs the import and reads ``complete``. The import is
profile-import's upsert, except that a null never clears a field; a row whose identifiers
belong to two different profiles becomes an import error, not a failed job.

Handlers run with the state lock held (see KlaviyoSandbox._operation).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sandbox.httpserver import Request, Response
from sandbox.klaviyo_attributes import (
    UPSERT_ATTRIBUTES,
    merged,
    require_identifier,
    sent_identifiers,
    validate_attributes,
    validate_meta,
)
from sandbox.klaviyo_documents import (
    body_data,
    list_resource,
    page_size,
    paged,
    profile_resource,
)
from sandbox.klaviyo_errors import JSON_API, ApiError, invalid, not_found
from sandbox.klaviyo_import_jobs import JOB_TYPE, ImportJob, job_resource
from sandbox.klaviyo_state import KlaviyoState

MAX_PROFILES = 10_000
MAX_BODY_BYTES = 5_000_000
JOB_LIFETIME = timedelta(days=7)
ROWS = "/data/attributes/profiles/data"

# Given a row's attributes (nulls dropped), answer an error code to fail that row in the
# import, or None to import it. For tests of partial failures.
RowErrorRule = Callable[[dict[str, Any]], str | None]


@dataclass
class BulkImportSettings:
    polls_until_complete: int = 2
    row_error: RowErrorRule | None = None
    # A job also takes at least this long (from its acceptance) to complete, as Klaviyo's
    # queue does; 0 keeps tests driven by polls alone.
    processing_seconds: float = 0.0


class BulkImportEndpoints:
    def __init__(self, state: KlaviyoState, base_url: Callable[[], str]) -> None:
        self.state, self.base_url = state, base_url
        self.settings = BulkImportSettings()

    # -- create --------------------------------------------------------------------------

    def bulk_import_profiles(self, request: Request) -> Response:
        if len(request.body) > MAX_BODY_BYTES:
            raise ApiError(413, "request_too_large", "Request entity too large.",
                           f"The request body must not exceed {MAX_BODY_BYTES} bytes.")
        data = body_data(request, JOB_TYPE)
        rows = _rows(data.get("attributes"))
        problems = [p for i, row in enumerate(rows) if (p := self._row_problem(i, row))]
        if problems:
            return Response(400, {"errors": [p.document()["errors"][0] for p in problems]},
                            content_type=JSON_API)
        list_ids = self._list_ids(data.get("relationships"))
        now = datetime.now(UTC)
        job = ImportJob(id=self.state.new_job_id(), rows=rows, list_ids=list_ids,
                        total_count=len(rows), created_at=_iso(now),
                        expires_at=_iso(now + JOB_LIFETIME), accepted_at=time.monotonic())
        self.state.bulk_import_jobs[job.id] = job
        return Response(202, {"data": job_resource(job, self._job_url(job))}, content_type=JSON_API)

    def _row_problem(self, index: int, row: Any) -> ApiError | None:
        base = f"{ROWS}/{index}"
        if not isinstance(row, dict) or row.get("type") != "profile":
            return invalid("'type' must be 'profile'.", pointer=f"{base}/type")
        try:
            attributes = validate_attributes(row.get("attributes"), UPSERT_ATTRIBUTES)
            validate_meta(row.get("meta"))
            profile_id = row.get("id")
            if profile_id is None:
                require_identifier(attributes)
            elif profile_id not in self.state.profiles:
                return invalid("Profile does not exist.", pointer=f"{base}/id")
        except ApiError as error:
            # The shared validators point into a single profile document ("/data/...").
            error.pointer = base + (error.pointer or "/data").removeprefix("/data")
            return error
        return None

    def _list_ids(self, relationships: Any) -> list[str]:
        if relationships is None:
            return []
        pointer = "/data/relationships/lists"
        lists = relationships.get("lists") if isinstance(relationships, dict) else None
        items = lists.get("data") if isinstance(lists, dict) else None
        if not isinstance(items, list):
            raise invalid("'lists' must hold a 'data' array.", pointer=pointer)
        list_ids: list[str] = []
        for item in items:
            list_id = item.get("id") if isinstance(item, dict) else None
            if not isinstance(list_id, str) or list_id not in self.state.lists:
                raise invalid(f"List ID {list_id} does not exist.", pointer=pointer)
            list_ids.append(list_id)
        return list(dict.fromkeys(list_ids))

    # -- read side -----------------------------------------------------------------------

    def get_bulk_import_profiles_job(self, request: Request) -> Response:
        job = self._job(request.params["job_id"])
        self._advance(job)
        return Response(200, {"data": job_resource(job, self._job_url(job)),
                              "links": {"self": self._job_url(job)}}, content_type=JSON_API)

    def get_errors_for_bulk_import_profiles_job(self, request: Request) -> Response:
        return self._page(request, self._job(request.params["id"]).errors)

    def get_profiles_for_bulk_import_profiles_job(self, request: Request) -> Response:
        ids = self._job(request.params["id"]).profile_ids
        return self._page(request, ids, lambda pid: profile_resource(
            self.state.profiles[pid], self.base_url(), request))

    def get_profile_ids_for_bulk_import_profiles_job(self, request: Request) -> Response:
        ids = self._job(request.params["id"]).profile_ids
        return self._page(request, ids, lambda pid: {"type": "profile", "id": pid})

    def get_list_for_bulk_import_profiles_job(self, request: Request) -> Response:
        job = self._job(request.params["id"])
        data = [list_resource(self.state.lists[lid], self.base_url()) for lid in job.list_ids]
        return Response(200, {"data": data, "links": {"self": self._job_url(job) + "/lists"}},
                        content_type=JSON_API)

    def get_list_ids_for_bulk_import_profiles_job(self, request: Request) -> Response:
        job = self._job(request.params["id"])
        data = [{"type": "list", "id": lid} for lid in job.list_ids]
        return Response(200, {"data": data, "links": {
            "self": self._job_url(job) + "/relationships/lists"}}, content_type=JSON_API)

    # -- processing ----------------------------------------------------------------------

    def _advance(self, job: ImportJob) -> None:
        if job.status in ("complete", "cancelled"):
            return
        job.polls += 1
        if job.polls == 1 and self.settings.polls_until_complete > 0:
            return  # first look: still queued
        if job.started_at is None:
            job.status, job.started_at = "processing", _iso(datetime.now(UTC))
        waited = time.monotonic() - job.accepted_at
        if job.polls > self.settings.polls_until_complete and (
                waited >= self.settings.processing_seconds):
            self.run(job)

    def run(self, job: ImportJob) -> None:
        """Import every row now and mark the job complete."""
        job.started_at = job.started_at or _iso(datetime.now(UTC))
        written: dict[str, None] = {}  # an ordered set: two rows may name one profile
        for index, row in enumerate(job.rows):
            profile_id = self._import_row(job, index, row)
            if profile_id is not None:
                written[profile_id] = None
        job.profile_ids = list(written)
        job.rows = []  # the payloads live on only in import errors, as at Klaviyo
        job.status, job.completed_at = "complete", _iso(datetime.now(UTC))

    def _import_row(self, job: ImportJob, index: int, row: dict[str, Any]) -> str | None:
        """Import one row; the id of the profile it wrote, or None if it failed."""
        changes = _without_nulls(row["attributes"])
        rule = self.settings.row_error
        code = rule(changes) if rule is not None else None
        if code is not None:
            self._fail(job, index, row, code, "Invalid input.", "The profile was rejected.")
            return None
        record = self._target(row, changes)
        if record is None:
            self._fail(job, index, row, "duplicate_profile", "Conflict.",
                       "A profile already exists with one of these identifiers.")
            return None
        record["attributes"] = merged(record["attributes"], changes, row.get("meta"))
        job.completed_count += 1
        for list_id in job.list_ids:
            if list_id in self.state.members:
                self.state.members[list_id].add(record["id"])
        return str(record["id"])

    def _target(self, row: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any] | None:
        """The profile the row updates (a new one if nothing matches), or None on a
        conflict: its identifiers belong to different profiles."""
        identifiers = sent_identifiers(changes)
        record = self.state.profiles.get(row.get("id") or "")
        if record is None:
            matches = self.state.resolve(identifiers)
            if len({m["id"] for m in matches.values()}) > 1:
                return None
            record = next(iter(matches.values()), None)
        if record is None:
            return self.state.create_profile()
        if self.state.first_holder(identifiers, excluding=record["id"]) is not None:
            return None
        return record

    def _fail(self, job: ImportJob, index: int, row: dict[str, Any], code: str, title: str,
              detail: str) -> None:
        job.failed_count += 1
        job.errors.append({"type": "import-error", "id": str(uuid.uuid4()), "attributes": {
            "code": code, "title": title, "detail": detail,
            "source": {"pointer": f"{ROWS}/{index}/attributes"},
            "original_payload": row,
        }})

    # -- documents -----------------------------------------------------------------------

    def _job(self, job_id: str) -> ImportJob:
        job = self.state.bulk_import_jobs.get(job_id)
        if not isinstance(job, ImportJob):
            raise not_found(f"A profile bulk import job with id {job_id} does not exist.")
        return job

    def _page(self, request: Request, items: list[Any],
              resource: Callable[[Any], dict[str, Any]] | None = None) -> Response:
        size = page_size(request, default=20, maximum=100)
        page, links = paged(items, request, self.base_url(), size)
        data = [resource(item) for item in page] if resource else list(page)
        return Response(200, {"data": data, "links": links}, content_type=JSON_API)

    def _job_url(self, job: ImportJob) -> str:
        return f"{self.base_url()}/api/profile-bulk-import-jobs/{job.id}"


def _rows(attributes: Any) -> list[Any]:
    if not isinstance(attributes, dict):
        raise invalid("'attributes' is a required property", pointer="/data/attributes")
    profiles = attributes.get("profiles")
    if not isinstance(profiles, dict):
        raise invalid("'profiles' is a required property", pointer="/data/attributes/profiles")
    rows = profiles.get("data")
    if not isinstance(rows, list) or not rows:
        raise invalid("At least one profile is required.", pointer=ROWS)
    if len(rows) > MAX_PROFILES:
        raise invalid(f"At most {MAX_PROFILES} profiles may be given per request.",
                      pointer=ROWS)
    return rows


def _without_nulls(attributes: dict[str, Any]) -> dict[str, Any]:
    """Bulk import cannot clear: a null, at the top or inside location/properties, is
    ignored."""
    kept: dict[str, Any] = {}
    for name, value in attributes.items():
        if isinstance(value, dict):
            kept[name] = {k: v for k, v in value.items() if v is not None}
        elif value is not None:
            kept[name] = value
    return kept


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")
