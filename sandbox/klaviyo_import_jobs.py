"""A bulk profile import job as the Klaviyo sandbox keeps it, and its JSON:API resource
(``profile-bulk-import-job``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

JOB_TYPE = "profile-bulk-import-job"


@dataclass
class ImportJob:
    id: str
    rows: list[dict[str, Any]]  # the profile resource objects as sent
    list_ids: list[str]
    total_count: int
    created_at: str
    expires_at: str
    status: str = "queued"
    polls: int = 0
    started_at: str | None = None
    completed_at: str | None = None
    completed_count: int = 0
    failed_count: int = 0
    profile_ids: list[str] = field(default_factory=list)  # created or updated, once each
    errors: list[dict[str, Any]] = field(default_factory=list)
    accepted_at: float = 0.0  # time.monotonic() when accepted, for the processing delay


def job_resource(job: ImportJob, url: str) -> dict[str, Any]:
    """The job's resource object; ``url`` is the job's own address."""

    def related(name: str) -> dict[str, str]:
        return {"self": f"{url}/relationships/{name}", "related": f"{url}/{name}"}

    return {
        "type": JOB_TYPE, "id": job.id,
        "attributes": {
            "status": job.status, "created_at": job.created_at, "total_count": job.total_count,
            "completed_count": job.completed_count, "failed_count": job.failed_count,
            "completed_at": job.completed_at, "expires_at": job.expires_at,
            "started_at": job.started_at,
        },
        "relationships": {
            "lists": {"data": [{"type": "list", "id": lid} for lid in job.list_ids],
                      "links": related("lists")},
            "profiles": {"links": related("profiles")},
            "import-errors": {"links": {"related": f"{url}/import-errors"}},
        },
        "links": {"self": url},
    }
