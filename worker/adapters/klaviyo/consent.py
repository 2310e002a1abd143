"""Klaviyo calls of consent-sync and erasure: profiles suppressed since a moment, page by
page, and profile deletion jobs.

Requests go through a ``KlaviyoClient`` (headers, the fleet-wide rate limiter, error
classification). Only ids, external ids and the consent block are asked for: the pass has
no use for names or addresses. Messages name operations and statuses, never values.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import requests

from worker.adapters.klaviyo import errors as kerrors
from worker.adapters.klaviyo.client import KlaviyoClient
from worker.adapters.klaviyo.responses import data_items, next_link
from worker.core.classify import Verdict
from worker.core.consent_back import SUPPRESSION_TIMESTAMP, suppressed_since_filter
from worker.core.errors import KlaviyoRejected

PAGE_SIZE = 100  # Klaviyo's maximum for GET /api/profiles
DELETION_JOB_TYPE = "data-privacy-deletion-job"


class KlaviyoConsent:
    def __init__(self, client: KlaviyoClient) -> None:
        self.client = client

    def suppressed_since(self, watermark: datetime, page_size: int = PAGE_SIZE
                         ) -> Iterator[list[dict[str, Any]]]:
        """Pages of profile resources (``id``, ``attributes.external_id``,
        ``attributes.subscriptions``) whose email suppression is newer than ``watermark``,
        oldest first. One call per page."""
        operation = "get_profiles"
        path = "/api/profiles"
        params: dict[str, Any] = {
            "filter": suppressed_since_filter(watermark),
            "sort": SUPPRESSION_TIMESTAMP,
            "additional-fields[profile]": "subscriptions",
            "fields[profile]": "external_id,subscriptions",
            "page[size]": page_size,
        }
        while True:
            response, verdict = self.client.request(operation, "GET", path, params=params)
            if verdict.verdict is not Verdict.OK:
                raise _rejected(operation, response)
            yield data_items(response)
            following = next_link(response)
            if following is None:
                return
            # The cursor is followed on our own base URL: the key never goes elsewhere.
            path, params = following

    def request_deletion(self, profile_id: str) -> None:
        """Ask Klaviyo to delete the profile (and everything stored for it). Asynchronous:
        Klaviyo answers 202 and deletes later."""
        operation = "request_profile_deletion"
        body = {"data": {"type": DELETION_JOB_TYPE, "attributes": {"profile": {
            "data": {"type": "profile", "id": profile_id, "attributes": {}}}}}}
        response, verdict = self.client.request(
            operation, "POST", "/api/data-privacy-deletion-jobs", body=body)
        if verdict.verdict is Verdict.NOT_FOUND:
            return  # no such profile (deleted already): nothing left to delete
        if verdict.verdict is not Verdict.OK:
            raise _rejected(operation, response)


def _rejected(operation: str, response: requests.Response) -> KlaviyoRejected:
    errors = kerrors.error_objects(response)
    return KlaviyoRejected(f"{operation}: HTTP {response.status_code}",
                           status=response.status_code, errors=kerrors.field_errors(errors))
