"""Klaviyo events: ``create_event`` (one event, live path) and ``bulk_create_events`` (up to
1,000 events per request, backfill path).

Both answer 202: Klaviyo accepted the events for processing, and keeps the first event of a
(profile, metric, unique_id), so sending the same order again is harmless. Requests go
through a ``KlaviyoClient`` (headers, rate limiter, error classification); messages name the
operation and status only.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import requests

from worker.adapters.klaviyo import errors as kerrors
from worker.adapters.klaviyo.client import KlaviyoClient
from worker.core.classify import Verdict
from worker.core.errors import KlaviyoRejected

log = logging.getLogger(__name__)

EVENTS_PATH = "/api/events"
BULK_PATH = "/api/event-bulk-create-jobs"
MAX_EVENTS_PER_REQUEST = 1_000
MAX_BODY_BYTES = 5_000_000
ENVELOPE_HEADROOM = 4_096


@dataclass
class ProfileEvents:
    """One item of a bulk request: a profile reference (``{"type": "profile", "id"?,
    "attributes": {identifiers}}``) and the attributes of its events (without ``profile``)."""

    profile: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)


class KlaviyoEvents:
    def __init__(self, client: KlaviyoClient) -> None:
        self._client = client

    def create_event(self, event_attributes: dict[str, Any]) -> None:
        """Send one event (attributes as ``worker.core.events.event_attributes`` builds)."""
        operation = "create_event"
        body = {"data": {"type": "event", "attributes": event_attributes}}
        response, verdict = self._client.request(operation, "POST", EVENTS_PATH, body=body)
        if verdict.verdict is not Verdict.OK:
            raise _rejected(operation, response)

    def bulk_create_events(self, items: list[ProfileEvents], *, backfill: bool = False) -> int:
        """Send the events in as few requests as the limits allow (1,000 events, 5 MB);
        returns how many requests it took. ``backfill`` records them without firing flows."""
        operation = "bulk_create_events"
        sent = 0
        for document in bulk_documents(items, backfill=backfill):
            response, verdict = self._client.request(operation, "POST", BULK_PATH,
                                                     body=document)
            if verdict.verdict is not Verdict.OK:
                raise _rejected(operation, response)
            sent += 1
        return sent


def bulk_documents(items: list[ProfileEvents], *, backfill: bool,
                   max_events: int = MAX_EVENTS_PER_REQUEST,
                   max_bytes: int = MAX_BODY_BYTES) -> Iterator[dict[str, Any]]:
    """Request bodies holding every event of ``items``, each within both limits. A profile
    with more events than fit in one request is split across requests."""
    batch: list[dict[str, Any]] = []
    count = size = 0
    for item in items:
        for start in range(0, len(item.events), max_events):
            entry = _bulk_item(item.profile, item.events[start:start + max_events], backfill)
            entry_events = min(max_events, len(item.events) - start)
            entry_size = len(json.dumps(entry, separators=(",", ":")))
            if batch and (count + entry_events > max_events
                          or size + entry_size + ENVELOPE_HEADROOM > max_bytes):
                yield _job(batch)
                batch, count, size = [], 0, 0
            batch.append(entry)
            count += entry_events
            size += entry_size + 1
    if batch:
        yield _job(batch)


def _bulk_item(profile: dict[str, Any], events: list[dict[str, Any]],
               backfill: bool) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "profile": {"data": profile},
        "events": {"data": [
            {"type": "event", "attributes": {**event, "backfill": backfill} if backfill
             else event}
            for event in events
        ]},
    }
    if backfill:
        attributes["backfill"] = True
    return {"type": "event-bulk-create", "attributes": attributes}


def _job(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"data": {"type": "event-bulk-create-job",
                     "attributes": {"events-bulk-create": {"data": items}}}}


def _rejected(operation: str, response: requests.Response) -> KlaviyoRejected:
    errors = kerrors.error_objects(response)
    log.warning("%s: HTTP %s codes=%s klaviyo_request_ids=%s", operation,
                response.status_code, sorted(kerrors.error_codes(errors)),
                kerrors.request_ids(errors))
    return KlaviyoRejected(f"{operation}: HTTP {response.status_code}",
                           status=response.status_code, errors=kerrors.field_errors(errors))
