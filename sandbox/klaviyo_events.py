"""Event endpoints of the Klaviyo sandbox: create_event and bulk_create_events.

Both validate the body the way Klaviyo does (400 with a JSON pointer), resolve or create the
profile the event names, and keep only the first event of a (profile, metric, unique_id) —
the spec: "only the first processed event will be recorded". The ``backfill`` flag is kept
with each event so tests can tell historical loads from live ones. Handlers run with the
state lock held (see KlaviyoSandbox._operation).
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sandbox.httpserver import Request, Response
from sandbox.klaviyo_attributes import merged
from sandbox.klaviyo_documents import body_data
from sandbox.klaviyo_errors import invalid
from sandbox.klaviyo_state import SCALAR_FIELDS, KlaviyoState

MAX_BULK_EVENTS = 1_000
MAX_PROPERTIES = 400
EARLIEST = datetime(1990, 1, 1, tzinfo=UTC)
_PROFILE_IDENTIFIERS = ("email", "phone_number", "external_id", "anonymous_id")


@dataclass
class EventLog:
    """Every recorded event in arrival order, and the de-duplication keys seen."""

    events: list[dict[str, Any]] = field(default_factory=list)
    keys: set[tuple[str, str, str]] = field(default_factory=set)
    duplicates: int = 0
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def clear(self) -> None:
        self.events.clear()
        self.keys.clear()
        self.duplicates = 0


@dataclass
class _Parsed:
    profile: dict[str, Any]
    events: list[dict[str, Any]]  # validated event attributes
    backfill: bool


class EventEndpoints:
    def __init__(self, state: KlaviyoState) -> None:
        self.state = state
        self.log = EventLog()

    def create_event(self, request: Request) -> Response:
        data = body_data(request, "event")
        attributes = _object(data.get("attributes"), "/data/attributes")
        event = _event(attributes, "/data/attributes")
        profile = _profile(attributes.get("profile"), "/data/attributes/profile")
        self._record(_Parsed(profile, [event], bool(attributes.get("backfill"))))
        return Response(202, b"")

    def bulk_create_events(self, request: Request) -> Response:
        data = body_data(request, "event-bulk-create-job")
        where = "/data/attributes"
        attributes = _object(data.get("attributes"), where)
        wrapper = _object(attributes.get("events-bulk-create"), f"{where}/events-bulk-create")
        items = wrapper.get("data")
        if not isinstance(items, list):
            raise invalid("'data' must be an array.", pointer=f"{where}/events-bulk-create/data")
        parsed: list[_Parsed] = []
        for index, item in enumerate(items):  # all-or-nothing: validate everything first
            parsed.append(_bulk_item(item, f"{where}/events-bulk-create/data/{index}"))
        total = sum(len(p.events) for p in parsed)
        if total > MAX_BULK_EVENTS:
            raise invalid(f"A request may carry at most {MAX_BULK_EVENTS} events.",
                          pointer=f"{where}/events-bulk-create/data")
        for item in parsed:
            self._record(item)
        return Response(202, b"")

    # -- recording ---------------------------------------------------------------------

    def _record(self, parsed: _Parsed) -> None:
        profile_id = self._profile_id(parsed.profile)
        for event in parsed.events:
            metric = event["metric"]["data"]["attributes"]["name"]
            moment = event.get("time") or datetime.now(UTC).replace(microsecond=0).isoformat()
            unique_id = event.get("unique_id") or moment
            key = (profile_id, metric, unique_id)
            if key in self.log.keys:
                self.log.duplicates += 1
                continue
            self.log.keys.add(key)
            self.log.events.append({
                "id": str(next(self.log.ids)),
                "metric": metric,
                "profile_id": profile_id,
                "unique_id": unique_id,
                "time": moment,
                "value": event.get("value"),
                "value_currency": event.get("value_currency"),
                "properties": copy.deepcopy(event["properties"]),
                "backfill": bool(event.get("backfill", parsed.backfill)),
            })

    def _profile_id(self, reference: dict[str, Any]) -> str:
        """The profile the event names: by id, else by its identifiers; created when none
        matches, and given the identifiers and names it did not have yet."""
        attributes = reference.get("attributes") or {}
        wanted = {k: v for k, v in attributes.items() if k in SCALAR_FIELDS and v}
        profile_id = reference.get("id")
        if profile_id:
            record = self.state.profiles.get(profile_id)
            if record is None:
                raise invalid(f"A profile with id {profile_id} does not exist.",
                              pointer="/data/attributes/profile/data/id")
        else:
            matches = self.state.resolve(wanted)
            record = next(iter(matches.values()), None) or self.state.create_profile()
        missing = {k: v for k, v in wanted.items() if not record["attributes"].get(k)
                   and not self.state.holders(k, v)}
        if missing:
            record["attributes"] = merged(record["attributes"], missing, None)
        return str(record["id"])


# -- validation (pure) ---------------------------------------------------------------------

def _object(value: Any, pointer: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid(f"'{pointer.rsplit('/', 1)[-1]}' must be an object.", pointer=pointer)
    return value


def _bulk_item(item: Any, where: str) -> _Parsed:
    item = _object(item, where)
    if item.get("type") != "event-bulk-create":
        raise invalid("'type' must be 'event-bulk-create'.", pointer=f"{where}/type")
    attributes = _object(item.get("attributes"), f"{where}/attributes")
    profile = _profile(attributes.get("profile"), f"{where}/attributes/profile")
    wrapper = _object(attributes.get("events"), f"{where}/attributes/events")
    events = wrapper.get("data")
    if not isinstance(events, list) or not events:
        raise invalid("'data' must be a non-empty array.",
                      pointer=f"{where}/attributes/events/data")
    parsed = []
    for index, event in enumerate(events):
        at = f"{where}/attributes/events/data/{index}"
        event = _object(event, at)
        if event.get("type") != "event":
            raise invalid("'type' must be 'event'.", pointer=f"{at}/type")
        parsed.append(_event(_object(event.get("attributes"), f"{at}/attributes"),
                             f"{at}/attributes", bulk=True))
    return _Parsed(profile, parsed, bool(attributes.get("backfill")))


def _event(attributes: dict[str, Any], where: str, *, bulk: bool = False) -> dict[str, Any]:
    for name in ("properties", "metric") if bulk else ("properties", "metric", "profile"):
        if name not in attributes:
            raise invalid(f"'{name}' is a required property", pointer=f"{where}/{name}")
    properties = _object(attributes["properties"], f"{where}/properties")
    if len(properties) > MAX_PROPERTIES:
        raise invalid(f"An event may have at most {MAX_PROPERTIES} properties.",
                      pointer=f"{where}/properties")
    metric = _object(attributes["metric"], f"{where}/metric")
    metric_data = _object(metric.get("data"), f"{where}/metric/data")
    metric_name = _object(metric_data.get("attributes"),
                          f"{where}/metric/data/attributes").get("name")
    if not isinstance(metric_name, str) or not metric_name.strip():
        raise invalid("'name' is a required property",
                      pointer=f"{where}/metric/data/attributes/name")
    value = attributes.get("value")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise invalid("'value' must be a number.", pointer=f"{where}/value")
    unique_id = attributes.get("unique_id")
    if unique_id is not None and not isinstance(unique_id, str):
        raise invalid("'unique_id' must be a string.", pointer=f"{where}/unique_id")
    if attributes.get("time") is not None:
        attributes = {**attributes, "time": _time(attributes["time"], f"{where}/time")}
    return attributes


def _time(value: Any, pointer: str) -> str:
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise invalid("'time' must be an ISO 8601 datetime.", pointer=pointer) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if moment < EARLIEST or moment > datetime.now(UTC) + timedelta(days=365):
        raise invalid("'time' must be after 1990 and at most a year ahead.", pointer=pointer)
    return moment.astimezone(UTC).replace(microsecond=0).isoformat()


def _profile(value: Any, where: str) -> dict[str, Any]:
    wrapper = _object(value, where)
    data = _object(wrapper.get("data"), f"{where}/data")
    if data.get("type") != "profile":
        raise invalid("'type' must be 'profile'.", pointer=f"{where}/data/type")
    attributes = _object(data.get("attributes"), f"{where}/data/attributes")
    if not data.get("id") and not any(attributes.get(k) for k in _PROFILE_IDENTIFIERS):
        raise invalid("One or more identifiers is required",
                      pointer=f"{where}/data/attributes")
    return data
