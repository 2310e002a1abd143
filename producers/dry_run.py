"""``sync --dry-run``: run the real pipeline code, but let nothing be written anywhere.

Reads go through (iPaaS.com customer and external id, our link store, Klaviyo lookups);
every write — Klaviyo requests, link writes, iPaaS.com write-backs — is recorded instead
of sent, so the printed payloads are exactly what a real sync would send.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import requests

from worker.adapters.http import HttpAdapter
from worker.adapters.klaviyo.client import KlaviyoClient
from worker.bootstrap import Container
from worker.core.classify import Classification, Verdict
from worker.core.errors import FinalError
from worker.core.model import ListRef
from worker.services.subscription_step import sync_subscriptions
from worker.services.sync_service import Ports, sync_address, sync_profile

NEW_PROFILE = "(new profile)"


class RecordingHttp(HttpAdapter):
    """Sends GETs for real; records every other request and answers it with a 2xx."""

    def __init__(self, real: HttpAdapter, log: list[dict[str, Any]]) -> None:
        super().__init__(real.session, timeout=real.timeout)
        self._real = real
        self._log = log

    def send(
        self,
        operation: str,
        method: str,
        url: str,
        *,
        headers: dict[str, str],
        params: dict[str, Any] | None = None,
        json_body: Any = None,
    ) -> tuple[requests.Response, Classification]:
        if method.upper() == "GET":
            return self._real.send(
                operation, method, url, headers=headers, params=params, json_body=json_body
            )
        self._log.append(
            {"operation": operation, "method": method.upper(), "path": urlsplit(url).path,
             "params": params or {}, "body": json_body}
        )
        response = requests.Response()
        response.status_code = 202
        if operation == "create_or_update_profile":
            profile_id = (json_body or {}).get("data", {}).get("id") or NEW_PROFILE
            response.status_code = 200 if profile_id != NEW_PROFILE else 201
            response._content = json.dumps(
                {"data": {"type": "profile", "id": profile_id, "attributes": {}}}
            ).encode()
        elif operation == "create_list":
            response.status_code = 201
            response._content = json.dumps(
                {"data": {"type": "list", "id": "(new list)", "attributes": {}}}
            ).encode()
        return response, Classification(Verdict.OK)


class _ReadOnlyLinks:
    def __init__(self, real: Any, log: list[dict[str, Any]]) -> None:
        self._real, self._log = real, log

    def get(self, customer_id: str) -> str | None:
        return self._real.get(customer_id)

    def lookup(self, customer_id: str) -> tuple[str | None, bool]:
        return self._real.lookup(customer_id)

    def set(self, customer_id: str, profile_id: str) -> None:
        self._log.append({"operation": "store_link", "customer_id": customer_id,
                          "profile_id": profile_id})

    def delete(self, customer_id: str) -> None:
        self._log.append({"operation": "forget_link", "customer_id": customer_id})


class _ReadOnlyExternalIds:
    def __init__(self, real: Any, log: list[dict[str, Any]]) -> None:
        self._real, self._log = real, log

    def lookup_external_id(self, customer_id: str, table: str = "customer") -> str | None:
        return self._real.lookup_external_id(customer_id, table)

    def update_external_id(self, customer_id: str, external_id: str, table: str = "customer",
                           tracking_guid: str | None = None) -> None:
        self._log.append({"operation": "ipaas_update_external_id", "customer_id": customer_id,
                          "external_id": external_id})


class _UncachedLists:
    def __init__(self, klaviyo: KlaviyoClient, create_missing: bool) -> None:
        self._klaviyo, self._create_missing = klaviyo, create_missing

    def lookup(self, name: str) -> ListRef | None:
        found = self._klaviyo.find_lists(name)
        if found:
            return ListRef(found[0].id, found[0].opt_in_process)
        if not self._create_missing:
            return None
        # Recorded, not sent: the answer names no opt-in process, so it counts as double.
        created = self._klaviyo.create_list(name)
        return ListRef(created.id, created.opt_in_process)


def dry_run(customer_id: str, c: Container) -> dict[str, Any]:
    """Every step's would-be requests and every validation problem, for one customer."""
    writes: list[dict[str, Any]] = []
    klaviyo = KlaviyoClient(
        RecordingHttp(c.klaviyo.http, writes),
        base_url=c.settings.klaviyo_base_url,
        api_key=c.settings.klaviyo_api_key.value,
        revision=c.settings.klaviyo_revision,
    )
    ports = Ports(
        customers=c.ipaas,
        external_ids=_ReadOnlyExternalIds(c.ipaas, writes),
        links=_ReadOnlyLinks(c.links, writes),
        profiles=klaviyo,
        lists=_UncachedLists(klaviyo, c.settings.create_missing_lists),
        subscriptions=klaviyo,
    )
    region = c.settings.default_phone_region
    report: dict[str, Any] = {"customer_id": customer_id, "steps": {}, "writes": writes}
    try:
        synced = sync_profile(customer_id, ports, c.mapping, default_region=region)
    except FinalError as exc:
        report["steps"]["profile"] = _rejected(exc)
        report["valid"] = False
        return report
    report["steps"]["profile"] = {"outcome": "ok", "collection": synced.collection,
                                  "profile_id": synced.profile_id}
    args = (customer_id, synced.profile_id, synced.collection, ports, c.mapping)
    try:
        sync_address(*args, default_region=region, location_applied=synced.location_applied)
        report["steps"]["address"] = {"outcome": "ok"}
    except FinalError as exc:
        report["steps"]["address"] = _rejected(exc)
    try:
        sync_subscriptions(*args, default_region=region, now=datetime.now(UTC))
        report["steps"]["lists"] = {"outcome": "ok"}
    except FinalError as exc:
        report["steps"]["lists"] = _rejected(exc)
    report["valid"] = all(s["outcome"] == "ok" for s in report["steps"].values())
    return report


def _rejected(exc: FinalError) -> dict[str, Any]:
    return {"outcome": "rejected", "reason": exc.reason,
            "errors": [e.as_dict() for e in exc.errors]}
