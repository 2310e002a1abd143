"""List endpoints: get_lists (10 per page at most), get_list, create_list and list membership
(add_profiles_to_list / remove_profiles_from_list), which never touches consent.

Handlers run with the state lock held (see KlaviyoSandbox._operation).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sandbox.httpserver import Request, Response
from sandbox.klaviyo_documents import body_data, list_resource, page_size, paged, single
from sandbox.klaviyo_errors import JSON_API, invalid, not_found
from sandbox.klaviyo_filters import LIST_FILTERS, parse_filter
from sandbox.klaviyo_state import KlaviyoState

OPT_IN_PROCESSES = ("double_opt_in", "single_opt_in")
MAX_MEMBERS_PER_CALL = 1000


class ListEndpoints:
    def __init__(self, state: KlaviyoState, base_url: Callable[[], str]) -> None:
        self.state, self.base_url = state, base_url

    def get_lists(self, request: Request) -> Response:
        size = page_size(request, default=10, maximum=10)
        records = list(self.state.lists.values())
        if "filter" in request.query:
            conditions = parse_filter(request.query["filter"], LIST_FILTERS)
            records = [r for r in records if all(c.matches(r) for c in conditions)]
        page, links = paged(records, request, self.base_url(), size)
        data = [list_resource(r, self.base_url()) for r in page]
        return Response(200, {"data": data, "links": links}, content_type=JSON_API)

    def get_list(self, request: Request) -> Response:
        record = self.existing(request.params["id"])
        return Response(200, single(list_resource(record, self.base_url())),
                        content_type=JSON_API)

    def create_list(self, request: Request) -> Response:
        data = body_data(request, "list")
        attributes = data.get("attributes")
        if not isinstance(attributes, dict):
            raise invalid("'attributes' is a required property", pointer="/data/attributes")
        name = attributes.get("name")
        if not isinstance(name, str) or not name.strip():
            raise invalid("'name' is a required property", pointer="/data/attributes/name")
        opt_in = attributes.get("opt_in_process")
        if opt_in is not None and opt_in not in OPT_IN_PROCESSES:
            raise invalid("'opt_in_process' must be 'double_opt_in' or 'single_opt_in'.",
                          pointer="/data/attributes/opt_in_process")
        for key in attributes:
            if key not in ("name", "opt_in_process"):
                raise invalid(f"'{key}' is not a valid field for the resource 'list'.",
                              pointer=f"/data/attributes/{key}")
        record = self.state.create_list(name, opt_in)
        return Response(201, single(list_resource(record, self.base_url())),
                        content_type=JSON_API)

    def add_profiles_to_list(self, request: Request) -> Response:
        list_id, profile_ids = self._membership_change(request)
        self.state.members[list_id].update(profile_ids)
        return Response(204)

    def remove_profiles_from_list(self, request: Request) -> Response:
        list_id, profile_ids = self._membership_change(request)
        self.state.members[list_id].difference_update(profile_ids)
        return Response(204)

    def existing(self, list_id: str) -> dict[str, Any]:
        record = self.state.lists.get(list_id)
        if record is None:
            raise not_found(f"A list with id {list_id} does not exist.")
        return record

    def _membership_change(self, request: Request) -> tuple[str, list[str]]:
        record = self.existing(request.params["id"])
        items = body_data(request, "profile", many=True)
        if len(items) > MAX_MEMBERS_PER_CALL:
            raise invalid(f"At most {MAX_MEMBERS_PER_CALL} profiles may be given per request.",
                          pointer="/data")
        profile_ids: list[str] = []
        for index, item in enumerate(items):
            if item.get("id") not in self.state.profiles:
                raise invalid("Profile does not exist.", pointer=f"/data/{index}/id")
            profile_ids.append(item["id"])
        return record["id"], profile_ids
