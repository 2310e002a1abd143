"""Pure pieces of the batched subscription and list step: what waits in a batch, how a
batch is named, and which of its rows a Klaviyo 400 refused.

Many customers' subscription actions travel in one Klaviyo call, but outcomes stay per
customer: a 400 names the rows it refused by JSON pointer, those customers are rejected
and the rest of the batch is sent again without them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Hashable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from worker.core import reasons
from worker.core.backfill import BATCH_LIMITS
from worker.core.errors import FieldError

# A subscription job's row (``/data/attributes/profiles/data/3/attributes/email``) or a
# list-membership call's row (``/data/3/id``).
_ROW_POINTERS = (
    re.compile(r"^/data/attributes/profiles/data/(\d+)(?:/(.*))?$"),
    re.compile(r"^/data/(\d+)(?:/(.*))?$"),
)
_NO_LIST = "-"


@dataclass(frozen=True)
class BatchKey:
    """What one Klaviyo call can carry together: the kind of call, its list and, for
    subscribe jobs, whether it is a historical import."""

    kind: str  # subscriptions.SUBSCRIBE | UNSUBSCRIBE | REMOVE_FROM_LIST
    list_id: str | None
    historical: bool = False

    @property
    def limit(self) -> int:
        return BATCH_LIMITS[self.kind]

    def encode(self) -> str:
        return f"{self.kind}:{self.list_id or _NO_LIST}:{int(self.historical)}"

    @classmethod
    def decode(cls, text: str) -> BatchKey:
        kind, rest = text.split(":", 1)
        list_id, historical = rest.rsplit(":", 1)
        if kind not in BATCH_LIMITS or historical not in ("0", "1"):
            raise ValueError("not a subscription batch key")
        return cls(kind, None if list_id == _NO_LIST else list_id, historical == "1")


@dataclass(frozen=True)
class QueuedItem:
    """One customer's action waiting for its batch. ``email`` and ``phone_number`` are here
    because a consent job needs them; they wait in Redis only until the batch is sent."""

    step_id: str  # the lists step this action belongs to (its task id)
    action: int  # the action's index within that step
    customer_id: str
    profile_id: str
    email: str | None = None
    phone_number: str | None = None
    consented_at: str | None = None  # set for historical imports only

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> QueuedItem:
        raw = json.loads(text)
        return cls(**{name: raw.get(name) for name in cls.__dataclass_fields__})


def row_index(pointer: Any) -> tuple[int | None, str | None]:
    """The row a pointer names and the field within it: (3, "email"); (None, None) when the
    pointer names no row."""
    if not isinstance(pointer, str):
        return None, None
    for pattern in _ROW_POINTERS:
        match = pattern.match(pointer)
        if match is not None:
            rest = [part for part in (match[2] or "").split("/") if part]
            if rest[:1] == ["attributes"]:
                rest = rest[1:]
            return int(match[1]), (rest[0] if rest else None)
    return None, None


def refused_rows(
    errors: Sequence[tuple[Any, FieldError]], row_count: int
) -> dict[int, list[FieldError]] | None:
    """Row index → its problems, from (pointer, error) pairs of a 400; ``None`` unless every
    error names a row of the request, i.e. unless dropping rows can make it acceptable."""
    rows: dict[int, list[FieldError]] = {}
    for pointer, error in errors:
        index, field = row_index(pointer)
        if index is None or index >= row_count:
            return None
        rows.setdefault(index, []).append(
            FieldError(field or error.field, reasons.KLAVIYO_REJECTED, error.message)
        )
    return rows or None


def distinct_rows(identities: Sequence[Hashable]) -> tuple[list[int], list[list[int]]]:
    """Which rows to send when the same identity appears twice (one slot is enough, and
    Klaviyo may refuse a repeat), and for each sent row the rows it stands for."""
    first: dict[Hashable, int] = {}
    sent: list[int] = []
    owners: list[list[int]] = []
    for index, identity in enumerate(identities):
        if identity in first:
            owners[first[identity]].append(index)
            continue
        first[identity] = len(sent)
        sent.append(index)
        owners.append([index])
    return sent, owners


def step_outcome(rejected_reason: str | None) -> str:
    """The lists step's outcome once all its batches were sent: one refused action rejects
    the step (it is dead-lettered), otherwise it is synced."""
    return "rejected" if rejected_reason else "synced"
