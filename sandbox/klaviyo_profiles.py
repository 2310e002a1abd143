"""Profile endpoints: get_profiles, get_profile, create_profile, update_profile and
create_or_update_profile (profile-import, with Klaviyo's identity resolution).

Handlers run with the state lock held (see KlaviyoSandbox._operation).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sandbox.httpserver import Request, Response
from sandbox.klaviyo_attributes import (
    PROFILE_ATTRIBUTES,
    UPSERT_ATTRIBUTES,
    merged,
    require_identifier,
    sent_identifiers,
    validate_attributes,
    validate_meta,
)
from sandbox.klaviyo_documents import body_data, page_size, paged, profile_resource, single
from sandbox.klaviyo_errors import JSON_API, duplicate_profile, invalid, not_found
from sandbox.klaviyo_filters import (
    PROFILE_FILTERS,
    SUPPRESSION_TIMESTAMP,
    parse_datetime,
    parse_filter,
)
from sandbox.klaviyo_state import DUPLICATE_PRIORITY, KlaviyoState

SORTS = ("created", "updated", "id", "email", SUPPRESSION_TIMESTAMP)


def _filterable(record: dict[str, Any]) -> dict[str, Any]:
    """What filters look at: id, the attributes and the latest email suppression's time."""
    return {"id": record["id"], **record["attributes"],
            SUPPRESSION_TIMESTAMP: latest_suppression(record)}


def latest_suppression(record: dict[str, Any]) -> datetime | None:
    stamps = [parse_datetime(s.get("timestamp"))
              for s in record["subscriptions"]["email"]["marketing"]["suppression"]]
    found = [s for s in stamps if s is not None]
    return max(found) if found else None


def _sorted(records: list[dict[str, Any]], sort: str | None) -> list[dict[str, Any]]:
    """Records in ``sort`` order (``-`` descending); records without the value go last."""
    if not sort:
        return records
    field = sort.removeprefix("-")
    if field not in SORTS:
        raise invalid(f"'{sort}' is not a valid sort field.", parameter="sort")

    def value(record: dict[str, Any]) -> Any:
        if field == SUPPRESSION_TIMESTAMP:
            return latest_suppression(record)
        if field == "id":
            return record["id"]
        raw = record["attributes"].get(field)
        return parse_datetime(raw) if field in ("created", "updated") else raw

    keyed = [(value(r), r) for r in records]
    present = [pair for pair in keyed if pair[0] is not None]
    missing = [r for v, r in keyed if v is None]
    # Ties keep creation order (Python's sort is stable), as the cursor needs a fixed order.
    present.sort(key=lambda pair: pair[0], reverse=sort.startswith("-"))
    return [r for _, r in present] + missing


class ProfileEndpoints:
    def __init__(self, state: KlaviyoState, base_url: Callable[[], str]) -> None:
        self.state, self.base_url = state, base_url

    def get_profiles(self, request: Request) -> Response:
        size = page_size(request, default=20, maximum=100)
        if "filter" in request.query:
            conditions = parse_filter(request.query["filter"], PROFILE_FILTERS)
            records = self._candidates(conditions)
            records = [r for r in records if all(
                c.matches(_filterable(r)) for c in conditions)]
        else:
            records = list(self.state.profiles.values())
        records = _sorted(records, request.query.get("sort"))
        page, links = paged(records, request, self.base_url(), size)
        data = [profile_resource(r, self.base_url(), request) for r in page]
        return Response(200, {"data": data, "links": links}, content_type=JSON_API)

    def _candidates(self, conditions: list[Any]) -> list[dict[str, Any]]:
        """Profiles that may match: through the identity index when a condition names an
        identifier (a scan of every profile would make large tests crawl), else all."""
        for condition in conditions:
            if condition.field == "id":
                found = (self.state.profiles.get(v) for v in condition.values)
                return [r for r in found if r is not None]
            if condition.field in ("email", "phone_number", "external_id"):
                seen: dict[str, dict[str, Any]] = {}
                for value in condition.values:
                    for record in self.state.holders(condition.field, value):
                        seen[record["id"]] = record
                return sorted(seen.values(), key=lambda r: r["attributes"]["created"])
        return list(self.state.profiles.values())

    def get_profile(self, request: Request) -> Response:
        record = self._existing(request.params["id"])
        return self._answer(200, record, request)

    def create_profile(self, request: Request) -> Response:
        data = body_data(request, "profile")
        changes = validate_attributes(data.get("attributes"), PROFILE_ATTRIBUTES)
        require_identifier(changes)
        holder = self.state.first_holder(sent_identifiers(changes))
        if holder is not None:
            raise duplicate_profile(holder["id"])
        record = self.state.create_profile()
        record["attributes"] = merged(record["attributes"], changes, None)
        return self._answer(201, record, request)

    def update_profile(self, request: Request) -> Response:
        data = body_data(request, "profile")
        profile_id = request.params["id"]
        if data.get("id") != profile_id:
            raise invalid("'id' in the body must match the id in the URL.", pointer="/data/id")
        changes = validate_attributes(data.get("attributes", {}), PROFILE_ATTRIBUTES)
        validate_meta(data.get("meta"))
        record = self._existing(profile_id)
        self._update(record, changes, data.get("meta"))
        return self._answer(200, record, request)

    def create_or_update_profile(self, request: Request) -> Response:
        data = body_data(request, "profile")
        changes = validate_attributes(data.get("attributes"), UPSERT_ATTRIBUTES)
        validate_meta(data.get("meta"))
        identifiers = sent_identifiers(changes)
        if data.get("id") is not None:
            record = self.state.profiles.get(data["id"])
            if record is None:
                raise not_found(f"A profile with id {data['id']} does not exist.")
            self._update(record, changes, data.get("meta"))
            return self._answer(200, record, request)
        matches = self._resolve(identifiers)
        if len({m["id"] for m in matches.values()}) > 1:
            named = next(matches[f] for f in DUPLICATE_PRIORITY if f in matches)
            raise duplicate_profile(named["id"])
        if matches:
            record = next(iter(matches.values()))
            self._update(record, changes, data.get("meta"))
            return self._answer(200, record, request)
        require_identifier(changes)
        record = self.state.create_profile()
        record["attributes"] = merged(record["attributes"], changes, data.get("meta"))
        return self._answer(201, record, request)

    # -- helpers ---------------------------------------------------------------------

    def _resolve(self, identifiers: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """identifier name -> the profile holding the sent value, for those that match."""
        found: dict[str, dict[str, Any]] = {}
        for field in ("external_id", "email", "phone_number"):
            holders = self.state.holders(field, identifiers.get(field))
            if holders:
                found[field] = holders[0]
        return found

    def _update(self, record: dict[str, Any], changes: dict[str, Any], meta: Any) -> None:
        """Apply changes to an existing profile, all-or-nothing."""
        result = merged(record["attributes"], changes, meta)
        require_identifier(result)
        holder = self.state.first_holder(sent_identifiers(changes), excluding=record["id"])
        if holder is not None:
            raise duplicate_profile(holder["id"])
        record["attributes"] = result

    def _existing(self, profile_id: str) -> dict[str, Any]:
        record = self.state.profiles.get(profile_id)
        if record is None:
            raise not_found(f"A profile with id {profile_id} does not exist.")
        return record

    def _answer(self, status: int, record: dict[str, Any], request: Request) -> Response:
        document = single(profile_resource(record, self.base_url(), request))
        return Response(status, document, content_type=JSON_API)
