"""One Klaviyo call for many customers' subscription or list action, with outcomes per row.

The live path's batch flush and the backfill both send through ``send_subscription_batch``.
Klaviyo validates these calls all-or-nothing: one bad row answers 400 for the whole request
with a pointer naming the row. Those rows are reported as refused and the rest is sent again,
so one customer's bad data never holds back the others. Messages and logs carry operations,
statuses, row indexes and field names only.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from urllib.parse import quote

from worker.adapters.klaviyo import errors as kerrors
from worker.adapters.klaviyo.client import KlaviyoClient
from worker.adapters.klaviyo.payloads import (
    channel_of,
    chunks,
    members_document,
    subscribe_document,
    unsubscribe_document,
)
from worker.core import reasons
from worker.core.batch_outcomes import BatchKey, distinct_rows, refused_rows
from worker.core.classify import Verdict
from worker.core.errors import FieldError, KlaviyoRejected, ValidationFailed
from worker.core.model import SubscriptionTarget
from worker.core.subscriptions import REMOVE_FROM_LIST, SUBSCRIBE, UNSUBSCRIBE

log = logging.getLogger(__name__)

CUSTOM_SOURCE = "iPaaS.com sync"
SEND_ROUNDS = 3  # the first send and up to two resends without the refused rows
_PATHS = {
    SUBSCRIBE: ("bulk_subscribe_profiles", "POST", "/api/profile-subscription-bulk-create-jobs"),
    UNSUBSCRIBE: ("bulk_unsubscribe_profiles", "POST",
                  "/api/profile-subscription-bulk-delete-jobs"),
}

Refused = dict[int, list[FieldError]]


@dataclass(frozen=True)
class BatchRow:
    profile_id: str
    email: str | None
    phone_number: str | None
    consented_at: str | None = None  # historical imports only


class _RowsRefused(Exception):
    def __init__(self, rows: Refused) -> None:
        super().__init__(f"{len(rows)} rows refused")
        self.rows = rows


def send_subscription_batch(
    client: KlaviyoClient, key: BatchKey, rows: Sequence[BatchRow],
    *, custom_source: str = CUSTOM_SOURCE,
) -> Refused:
    """Apply ``key``'s action to every row; return the rows Klaviyo (or a missing
    identifier) refused, by index, with their problems.

    A refusal that names no row (a bad list id, a 403) refuses every row still unsent.
    RetryableError and unexpected errors propagate: nothing was settled, send again.
    """
    refused: Refused = {}
    for start, chunk in _offset_chunks(rows, key.limit):
        for index, errors in _send_chunk(client, key, chunk, custom_source).items():
            refused[start + index] = errors
    return refused


def _offset_chunks(rows: Sequence[BatchRow], size: int) -> list[tuple[int, list[BatchRow]]]:
    return [(n * size, chunk) for n, chunk in enumerate(chunks(rows, size))]


def _send_chunk(client: KlaviyoClient, key: BatchKey, rows: list[BatchRow],
                custom_source: str) -> Refused:
    refused: Refused = {}
    if key.kind != REMOVE_FROM_LIST:
        for index, row in enumerate(rows):
            try:
                channel_of(_target(row))
            except ValidationFailed as missing:
                refused[index] = missing.errors
    sendable = [i for i in range(len(rows)) if i not in refused]
    sent, owners = distinct_rows([_identity(key, rows[i]) for i in sendable])
    pending = [sendable[i] for i in sent]
    owned = {sendable[s]: [sendable[o] for o in own] for s, own in zip(sent, owners, strict=True)}
    for _ in range(SEND_ROUNDS):
        if not pending:
            return refused
        try:
            _send_once(client, key, [rows[i] for i in pending], custom_source)
            return refused
        except _RowsRefused as answer:
            bad = {pending[i]: errors for i, errors in answer.rows.items()}
        except KlaviyoRejected as whole:
            bad = {i: whole.errors for i in pending}
        for index, errors in bad.items():
            for owner in owned[index]:
                refused[owner] = errors
        pending = [i for i in pending if i not in bad]
    gave_up = [FieldError("request", reasons.KLAVIYO_REJECTED,
                          f"still refused after {SEND_ROUNDS} sends without the bad rows")]
    for index in pending:
        for owner in owned[index]:
            refused[owner] = gave_up
    return refused


def _identity(key: BatchKey, row: BatchRow) -> Hashable:
    if key.kind == UNSUBSCRIBE:
        return (row.email, row.phone_number)
    return row.profile_id


def _target(row: BatchRow) -> SubscriptionTarget:
    return SubscriptionTarget(row.email, row.phone_number, row.profile_id, row.consented_at)


def _send_once(client: KlaviyoClient, key: BatchKey, rows: list[BatchRow],
               custom_source: str) -> None:
    if key.kind == REMOVE_FROM_LIST:
        if key.list_id is None:
            raise ValueError("removing from a list needs the list's id")
        operation, method = "remove_profiles_from_list", "DELETE"
        path = f"/api/lists/{quote(key.list_id, safe='')}/relationships/profiles"
        body = members_document([row.profile_id for row in rows])
    elif key.kind == SUBSCRIBE:
        operation, method, path = _PATHS[SUBSCRIBE]
        targets = [SubscriptionTarget(r.email, r.phone_number, r.profile_id,
                                      r.consented_at if key.historical else None) for r in rows]
        body = subscribe_document(targets, list_id=key.list_id,
                                  historical_import=key.historical, custom_source=custom_source)
    else:
        operation, method, path = _PATHS[UNSUBSCRIBE]
        body = unsubscribe_document([SubscriptionTarget(r.email, r.phone_number) for r in rows],
                                    list_id=key.list_id)
    response, verdict = client.request(operation, method, path, body=body)
    if verdict.verdict is Verdict.OK:
        return
    errors = kerrors.error_objects(response)
    status = response.status_code
    log.warning("%s: HTTP %s rows=%d codes=%s klaviyo_request_ids=%s", operation, status,
                len(rows), sorted(kerrors.error_codes(errors)), kerrors.request_ids(errors)[:20])
    if status == 400:
        pairs = [(_pointer(error), field_error)
                 for error, field_error in zip(errors, kerrors.field_errors(errors), strict=True)]
        rows_refused = refused_rows(pairs, len(rows))
        if rows_refused:
            raise _RowsRefused(rows_refused)
    raise KlaviyoRejected(f"{operation}: HTTP {status}", status=status,
                          errors=kerrors.field_errors(errors))


def _pointer(error: dict[str, object]) -> object:
    source = error.get("source")
    return source.get("pointer") if isinstance(source, dict) else None
