"""Klaviyo's REST API over raw HTTP: profiles, lists and consent.

Every request goes through ``HttpAdapter`` (which raises for 429, 5xx and transport
failures); this module decides what a 404, 409 or other 4xx means for each operation.
Operation names are the OpenAPI ``operationId``s, so the rate limiter and logs speak the
spec's language. Exception messages name the operation and status only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any, NoReturn
from urllib.parse import quote

import requests

from worker.adapters.http import HttpAdapter
from worker.adapters.klaviyo import errors as kerrors
from worker.adapters.klaviyo.payloads import (
    PROFILE_LOOKUP_FIELDS,
    SubscriptionTarget,
    any_filter,
    chunks,
    equals_filter,
    list_document,
    members_document,
    profile_document,
    subscribe_document,
    unique,
    unsubscribe_document,
)
from worker.adapters.klaviyo.responses import (
    KlaviyoList,
    data_items,
    json_object,
    next_link,
    to_list,
)
from worker.core.classify import Classification, Verdict
from worker.core.errors import (
    ConfigurationError,
    DuplicateProfile,
    FinalError,
    KlaviyoRejected,
    ProfileNotFound,
)

__all__ = ["ImportResult", "KlaviyoClient", "KlaviyoList", "SubscriptionTarget"]

log = logging.getLogger(__name__)

JSON_API = "application/vnd.api+json"
LIST_MEMBERS_BATCH = 1000
SUBSCRIBE_BATCH = 1000
UNSUBSCRIBE_BATCH = 100
LISTS_PAGE_SIZE = 10  # Klaviyo's maximum for GET /api/lists
MAX_LIST_PAGES = 500  # a cursor loop on Klaviyo's side must not hang a worker


@dataclass(frozen=True)
class ImportResult:
    profile_id: str
    created: bool  # 201 → True, 200 → False


def _user_agent() -> str:
    try:
        version = metadata.version("ipaas-klaviyo")
    except metadata.PackageNotFoundError:
        version = "0"
    return f"ipaas-klaviyo/{version}"


class KlaviyoClient:
    def __init__(
        self,
        http: HttpAdapter,
        *,
        base_url: str,
        api_key: str,
        revision: str,
        before_request: Callable[[str], None] | None = None,
    ) -> None:
        key = api_key.strip()
        # requests echoes an invalid header value in its exception: refuse such a key here.
        if not key or not key.isascii() or not key.isprintable() or " " in key:
            raise ConfigurationError("klaviyo api key is empty or has invalid characters")
        self._http = http
        self._base_url = base_url.rstrip("/")
        self._api_key = key
        self._revision = revision
        self._before_request = before_request
        self._user_agent = _user_agent()

    @property
    def http(self) -> HttpAdapter:
        return self._http

    def __repr__(self) -> str:
        return f"KlaviyoClient(base_url={self._base_url!r}, revision={self._revision!r})"

    # -- profiles ----------------------------------------------------------------------

    def import_profile(
        self, attributes: dict[str, Any], *, profile_id: str | None = None
    ) -> ImportResult:
        """Create or update (upsert) a profile. A ``None`` attribute is left out, not sent."""
        operation = "create_or_update_profile"
        response, verdict = self._send(
            operation, "POST", "/api/profile-import",
            body=profile_document(attributes, profile_id),
        )
        if verdict.verdict is Verdict.OK:
            return ImportResult(self._resource_id(operation, response),
                                created=response.status_code == 201)
        self._raise_profile_write_error(operation, response, sent_id=profile_id is not None)

    def update_profile(self, profile_id: str, attributes: dict[str, Any]) -> None:
        operation = "update_profile"
        response, verdict = self._send(
            operation, "PATCH", f"/api/profiles/{_segment(profile_id)}",
            body=profile_document(attributes, profile_id),
        )
        if verdict.verdict is not Verdict.OK:
            self._raise_profile_write_error(operation, response, sent_id=True)

    def find_profile_id(self, field: str, value: str) -> str | None:
        """The id of the first profile whose ``field`` equals ``value``, or ``None``."""
        if field not in PROFILE_LOOKUP_FIELDS:
            raise ValueError(f"cannot look profiles up by {field!r}")
        operation = "get_profiles"
        # params= lets requests percent-encode the filter, so "+" travels as %2B.
        response, verdict = self._send(
            operation, "GET", "/api/profiles",
            params={"filter": equals_filter(field, value), "page[size]": 1},
        )
        if verdict.verdict is not Verdict.OK:
            raise self._rejected(operation, response)
        for resource in data_items(response):
            if isinstance(resource.get("id"), str):
                return str(resource["id"])
        return None

    def get_profile(self, profile_id: str) -> dict[str, Any] | None:
        """The profile resource (``id``, ``attributes`` with subscriptions), or ``None``."""
        operation = "get_profile"
        response, verdict = self._send(
            operation, "GET", f"/api/profiles/{_segment(profile_id)}",
            params={"additional-fields[profile]": "subscriptions"},
        )
        if verdict.verdict is Verdict.NOT_FOUND:
            return None
        if verdict.verdict is not Verdict.OK:
            raise self._rejected(operation, response)
        data = json_object(response).get("data")
        return data if isinstance(data, dict) else None

    # -- lists -------------------------------------------------------------------------

    def find_lists(self, name: str) -> list[KlaviyoList]:
        """Every list named exactly ``name``; names are not unique, so all pages are read."""
        operation = "get_lists"
        path = "/api/lists"
        # The spec declares `name` list-valued only: equals(name,"x") is not a valid filter.
        params: dict[str, Any] = {"filter": any_filter("name", [name]),
                                  "page[size]": LISTS_PAGE_SIZE}
        found: list[KlaviyoList] = []
        for _ in range(MAX_LIST_PAGES):
            response, verdict = self._send(operation, "GET", path, params=params)
            if verdict.verdict is not Verdict.OK:
                raise self._rejected(operation, response)
            found.extend(lst for lst in map(to_list, data_items(response))
                         if lst is not None and lst.name == name)
            next_page = next_link(response)
            if next_page is None:
                return found
            # Follow the cursor on our own base URL: the key is never sent to another host.
            path, params = next_page
        log.warning("%s: stopped after %d pages", operation, MAX_LIST_PAGES)
        return found

    def create_list(self, name: str, opt_in_process: str | None = None) -> KlaviyoList:
        operation = "create_list"
        response, verdict = self._send(
            operation, "POST", "/api/lists", body=list_document(name, opt_in_process)
        )
        if verdict.verdict is not Verdict.OK:
            raise self._rejected(operation, response)
        created = to_list(json_object(response).get("data"))
        if created is None:
            raise FinalError(f"{operation}: HTTP {response.status_code} without a list id")
        return created

    def add_profiles_to_list(self, list_id: str, profile_ids: list[str]) -> None:
        self._change_members("add_profiles_to_list", "POST", list_id, profile_ids)

    def remove_profiles_from_list(self, list_id: str, profile_ids: list[str]) -> None:
        self._change_members("remove_profiles_from_list", "DELETE", list_id, profile_ids)

    # -- consent -----------------------------------------------------------------------

    def subscribe(
        self,
        targets: list[SubscriptionTarget],
        *,
        list_id: str | None,
        historical_import: bool,
        custom_source: str = "iPaaS.com sync",
    ) -> None:
        """Start bulk subscribe jobs. Klaviyo answers 202 with no job to poll: the consent
        shows on the profile later."""
        operation = "bulk_subscribe_profiles"
        for batch in chunks(targets, SUBSCRIBE_BATCH):
            body = subscribe_document(batch, list_id=list_id,
                                      historical_import=historical_import,
                                      custom_source=custom_source)
            response, verdict = self._send(
                operation, "POST", "/api/profile-subscription-bulk-create-jobs", body=body
            )
            if verdict.verdict is not Verdict.OK:
                raise self._rejected(operation, response)

    def unsubscribe(self, targets: list[SubscriptionTarget], *, list_id: str | None) -> None:
        """Start bulk unsubscribe jobs. With a list, a target that is not a member of it is
        unsubscribed globally (Klaviyo's rule): name a list only for its members."""
        operation = "bulk_unsubscribe_profiles"
        for batch in chunks(targets, UNSUBSCRIBE_BATCH):
            body = unsubscribe_document(batch, list_id=list_id)
            response, verdict = self._send(
                operation, "POST", "/api/profile-subscription-bulk-delete-jobs", body=body
            )
            if verdict.verdict is not Verdict.OK:
                raise self._rejected(operation, response)

    # -- for sibling adapters (bulk import jobs) -----------------------------------------

    def request(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
    ) -> tuple[requests.Response, Classification]:
        """One authenticated request to ``path`` on the configured base URL, through the
        same headers, rate-limit hook and error classification as every call here."""
        return self._send(operation, method, path, params=params, body=body)

    # -- internals ---------------------------------------------------------------------

    def _change_members(
        self, operation: str, method: str, list_id: str, profile_ids: list[str]
    ) -> None:
        path = f"/api/lists/{_segment(list_id)}/relationships/profiles"
        for batch in chunks(unique(profile_ids), LIST_MEMBERS_BATCH):
            response, verdict = self._send(operation, method, path,
                                           body=members_document(batch))
            if verdict.verdict is not Verdict.OK:
                raise self._rejected(operation, response)

    def _send(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
    ) -> tuple[requests.Response, Classification]:
        if self._before_request is not None:
            self._before_request(operation)
        headers = {
            "Authorization": f"Klaviyo-API-Key {self._api_key}",
            "revision": self._revision,
            "Accept": JSON_API,
            "User-Agent": self._user_agent,
        }
        if body is not None:
            headers["Content-Type"] = JSON_API
        return self._http.send(operation, method, self._base_url + path, headers=headers,
                               params=params, json_body=body)

    def _raise_profile_write_error(
        self, operation: str, response: requests.Response, *, sent_id: bool
    ) -> NoReturn:
        errors = kerrors.error_objects(response)
        status = response.status_code
        if status == 409 and kerrors.DUPLICATE_PROFILE_CODE in kerrors.error_codes(errors):
            _log_failure(operation, status, errors)
            raise DuplicateProfile(kerrors.duplicate_profile_id(errors))
        if status == 404 and sent_id:
            # Klaviyo answers 404 when the id we hold no longer exists *or* when our other
            # identifiers belong to a different profile: both mean "re-resolve".
            _log_failure(operation, status, errors)
            raise ProfileNotFound(f"{operation}: HTTP 404",
                                  errors=kerrors.field_errors(errors))
        raise self._rejected(operation, response)

    def _rejected(self, operation: str, response: requests.Response) -> KlaviyoRejected:
        errors = kerrors.error_objects(response)
        _log_failure(operation, response.status_code, errors)
        return KlaviyoRejected(f"{operation}: HTTP {response.status_code}",
                               status=response.status_code, errors=kerrors.field_errors(errors))

    def _resource_id(self, operation: str, response: requests.Response) -> str:
        data = json_object(response).get("data")
        if isinstance(data, dict) and isinstance(data.get("id"), str) and data["id"]:
            return str(data["id"])
        raise FinalError(f"{operation}: HTTP {response.status_code} without a profile id")


def _log_failure(operation: str, status: int, errors: list[dict[str, Any]]) -> None:
    log.warning("%s: HTTP %s codes=%s klaviyo_request_ids=%s", operation, status,
                sorted(kerrors.error_codes(errors)), kerrors.request_ids(errors))


def _segment(value: str) -> str:
    """A path segment that cannot escape its place in the URL."""
    return quote(value, safe="")
