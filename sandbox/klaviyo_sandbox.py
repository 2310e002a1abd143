"""A stateful stand-in for Klaviyo's REST API (revision 2026-07-15) on a loopback port.

Tests and the demo point the Klaviyo client at ``sandbox.url`` and then read the outcome
through the methods below. Behaviour follows Klaviyo's spec and the observed behaviour the
reference notes document (409 duplicate_profile with meta.duplicate_profile_id, 415 for a
wrong content type, list pages of 10, double opt-in, the "+" filter trap).
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Callable
from functools import partial
from typing import Any

from sandbox.httpserver import DROP, Handler, Request, Response, SandboxServer
from sandbox.klaviyo_bulk_import import BulkImportEndpoints, BulkImportSettings, RowErrorRule
from sandbox.klaviyo_errors import (
    JSON_API,
    ApiError,
    invalid,
    method_not_allowed,
    not_authenticated,
    not_found,
    unsupported_media_type,
)
from sandbox.klaviyo_events import EventEndpoints
from sandbox.klaviyo_limits import RateLimiter, tier_limits
from sandbox.klaviyo_lists import ListEndpoints
from sandbox.klaviyo_privacy import PrivacyEndpoints, suppress
from sandbox.klaviyo_profiles import ProfileEndpoints
from sandbox.klaviyo_state import CONSENT_STATES, IDENTIFIERS, KlaviyoState
from sandbox.klaviyo_subscriptions import SubscriptionEndpoints

REVISION_FORMAT = re.compile(r"^\d{4}-\d{2}-\d{2}(\.[a-z]+)?$")
METHODS = ("GET", "POST", "PATCH", "DELETE", "PUT")

# A hook sees every authenticated request with its operationId before the endpoint does; a
# Response it returns is sent instead. This is where fault injection and rate limiting
# (429 + Retry-After) plug in.
Interceptor = Callable[[Request, str], Response | None]


class KlaviyoSandbox:
    def __init__(self, api_key: str = "pk_sandbox_key", revision: str = "2026-07-15") -> None:
        self.api_key, self.revision = api_key, revision
        self.server = SandboxServer()
        self.interceptors: list[Interceptor] = []
        self._rate_limiter: RateLimiter | None = None
        self._state = KlaviyoState()
        profiles = ProfileEndpoints(self._state, lambda: self.url)
        lists = ListEndpoints(self._state, lambda: self.url)
        consent = SubscriptionEndpoints(self._state)
        imports = self._bulk_imports = BulkImportEndpoints(self._state, lambda: self.url)
        jobs = "/api/profile-bulk-import-jobs"
        events = self._events = EventEndpoints(self._state)
        privacy = self._privacy = PrivacyEndpoints(self._state)
        # (method, path, operationId, handler). Later additions (events) register here the
        # same way.
        self._operations: list[tuple[str, str, str, Handler]] = [
            ("GET", "/api/profiles", "get_profiles", profiles.get_profiles),
            ("POST", "/api/profiles", "create_profile", profiles.create_profile),
            ("GET", "/api/profiles/{id}", "get_profile", profiles.get_profile),
            ("PATCH", "/api/profiles/{id}", "update_profile", profiles.update_profile),
            ("POST", "/api/profile-import", "create_or_update_profile",
             profiles.create_or_update_profile),
            ("GET", "/api/lists", "get_lists", lists.get_lists),
            ("POST", "/api/lists", "create_list", lists.create_list),
            ("GET", "/api/lists/{id}", "get_list", lists.get_list),
            ("POST", "/api/lists/{id}/relationships/profiles", "add_profiles_to_list",
             lists.add_profiles_to_list),
            ("DELETE", "/api/lists/{id}/relationships/profiles", "remove_profiles_from_list",
             lists.remove_profiles_from_list),
            ("POST", "/api/profile-subscription-bulk-create-jobs", "bulk_subscribe_profiles",
             consent.bulk_subscribe_profiles),
            ("POST", "/api/profile-subscription-bulk-delete-jobs", "bulk_unsubscribe_profiles",
             consent.bulk_unsubscribe_profiles),
            ("POST", jobs, "bulk_import_profiles", imports.bulk_import_profiles),
            ("GET", jobs + "/{job_id}", "get_bulk_import_profiles_job",
             imports.get_bulk_import_profiles_job),
            ("GET", jobs + "/{id}/import-errors", "get_errors_for_bulk_import_profiles_job",
             imports.get_errors_for_bulk_import_profiles_job),
            ("GET", jobs + "/{id}/profiles", "get_profiles_for_bulk_import_profiles_job",
             imports.get_profiles_for_bulk_import_profiles_job),
            ("GET", jobs + "/{id}/relationships/profiles",
             "get_profile_ids_for_bulk_import_profiles_job",
             imports.get_profile_ids_for_bulk_import_profiles_job),
            ("GET", jobs + "/{id}/lists", "get_list_for_bulk_import_profiles_job",
             imports.get_list_for_bulk_import_profiles_job),
            ("GET", jobs + "/{id}/relationships/lists",
             "get_list_ids_for_bulk_import_profiles_job",
             imports.get_list_ids_for_bulk_import_profiles_job),
            ("POST", "/api/events", "create_event", events.create_event),
            ("POST", "/api/event-bulk-create-jobs", "bulk_create_events",
             events.bulk_create_events),
            ("POST", "/api/data-privacy-deletion-jobs", "request_profile_deletion",
             privacy.request_profile_deletion),
        ]
        self._register_routes()

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> KlaviyoSandbox:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> KlaviyoSandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return self.server.url

    def reset(self) -> None:
        """Forget all data and settings (rate limits off); interceptors stay installed."""
        self._state.clear()
        with self._state.lock:
            self._events.log.clear()
        self._bulk_imports.settings = BulkImportSettings()
        self._privacy.deletion_jobs.clear()
        self._rate_limiter = None
        with self._state.lock:
            self.server.requests.clear()

    # -- arranging and inspecting state (test side) -----------------------------------

    @property
    def call_counts(self) -> Counter[str]:
        return self._state.call_counts

    @property
    def consent_emails(self) -> list[dict[str, str | None]]:
        return self._state.consent_emails

    @property
    def account_opt_in_process(self) -> str:
        """The account's default opt-in ("single_opt_in" unless set; ``reset`` restores it):
        what a subscribe job without a list follows."""
        return self._state.account_opt_in_process

    @account_opt_in_process.setter
    def account_opt_in_process(self, value: str) -> None:
        if value not in ("single_opt_in", "double_opt_in"):
            raise ValueError("opt-in process must be single_opt_in or double_opt_in")
        with self._state.lock:
            self._state.account_opt_in_process = value

    def pending_opt_ins(self, profile_id: str) -> set[str | None]:
        """What the profile's unconfirmed double opt-in emails ask for: list ids, and None
        for email consent asked without a list."""
        with self._state.lock:
            return set(self._state.pending_opt_ins.get(profile_id, set()))

    def confirm_opt_in(self, profile_id: str) -> int:
        """The person clicks the confirmation email: email consent SUBSCRIBED and the lists
        that waited for it joined. Returns how many pending requests it settled."""
        with self._state.lock:
            return self._state.confirm_opt_in(profile_id)

    def add_list(self, name: str, opt_in_process: str = "single_opt_in") -> str:
        with self._state.lock:
            return str(self._state.create_list(name, opt_in_process)["id"])

    def add_profile(self, **attributes: Any) -> str:
        """Create a profile directly (no HTTP, no validation): to arrange legacy data."""
        with self._state.lock:
            record = self._state.create_profile()
            for name, value in attributes.items():
                if name in ("location", "properties"):
                    record["attributes"][name].update(value)
                elif name in record["attributes"]:
                    record["attributes"][name] = value
                else:
                    raise TypeError(f"unknown profile attribute {name!r}")
            return str(record["id"])

    def profile(self, profile_id: str) -> dict[str, Any] | None:
        return self._state.profile_copy(profile_id)

    def find_profiles(self, *, email: str | None = None, phone_number: str | None = None,
                      external_id: str | None = None) -> list[dict[str, Any]]:
        given = {"email": email, "phone_number": phone_number, "external_id": external_id}
        criteria = {k: v for k, v in given.items() if v is not None}
        if not criteria:
            raise TypeError(f"give at least one of {IDENTIFIERS}")
        return self._state.matching_profiles(criteria)

    def profile_count(self) -> int:
        with self._state.lock:
            return len(self._state.profiles)

    def all_profiles(self) -> list[dict[str, Any]]:
        return self._state.matching_profiles({})

    def set_consent(self, profile_id: str, channel: str = "email",
                    consent: str = "UNSUBSCRIBED") -> None:
        if consent not in CONSENT_STATES or channel not in ("email", "sms"):
            raise ValueError("channel must be email|sms and consent one of " + str(CONSENT_STATES))
        with self._state.lock:
            profile = self._state.profiles[profile_id]
            self._state.record_consent(profile, channel, "marketing", consent, method="SANDBOX")

    def suppress(self, profile_id: str, reason: str = "UNSUBSCRIBE",
                 timestamp: str | None = None) -> str:
        """Admin hook: the person unsubscribes (UNSUBSCRIBE), complains (SPAM_COMPLAINT), or
        the address bounces; adds a suppression with the reason and a timestamp, returned.
        Also served over HTTP: POST /_sandbox/profiles/{id}/suppressions {"reason": ...}."""
        with self._state.lock:
            return suppress(self._state, profile_id, reason, timestamp)

    def unsubscribe(self, profile_id: str) -> str:
        """Admin hook: the person clicks an email's unsubscribe link."""
        return self.suppress(profile_id, "UNSUBSCRIBE")

    @property
    def deletion_jobs(self) -> list[dict[str, Any]]:
        """What each accepted data privacy deletion job asked for ({field, value})."""
        with self._state.lock:
            return list(self._privacy.deletion_jobs)

    def email_consent(self, profile_id: str) -> str:
        with self._state.lock:
            profile = self._state.profiles[profile_id]
            return str(profile["subscriptions"]["email"]["marketing"]["consent"])

    def list_members(self, name: str) -> set[str]:
        return self._state.members_of(name)

    def events(self, metric: str | None = None, profile_id: str | None = None
               ) -> list[dict[str, Any]]:
        """Recorded events (first of each profile/metric/unique_id), oldest first."""
        with self._state.lock:
            return [dict(e) for e in self._events.log.events
                    if metric in (None, e["metric"]) and profile_id in (None, e["profile_id"])]

    @property
    def duplicate_events(self) -> int:
        """How many events were dropped as repeats of a (profile, metric, unique_id)."""
        return self._events.log.duplicates

    @property
    def operation_ids(self) -> list[str]:
        return [operation_id for _, _, operation_id, _ in self._operations]

    # -- rate limits -------------------------------------------------------------------

    def enforce_rate_limits(self, scale: float = 1.0,
                            limits: dict[str, tuple[int, int]] | None = None) -> None:
        """Throttle like Klaviyo: per tier, fixed 1 s burst and 60 s steady windows with the
        documented counts times ``scale``; ``limits`` sets chosen tiers' (burst, steady)
        exactly. Starts with fresh counts and statistics."""
        self._rate_limiter = RateLimiter(tier_limits(scale, limits))

    def disable_rate_limits(self) -> None:
        self._rate_limiter = None

    def rate_stats(self) -> dict[str, dict[str, int]]:
        """Per tier that saw traffic since limits were enforced: its limits, the most requests
        that arrived in one second and in one minute, how many were throttled, and how many
        reached the limiter in all."""
        limiter = self._rate_limiter
        return limiter.stats() if limiter is not None else {}

    # -- bulk profile import jobs ------------------------------------------------------

    @property
    def bulk_polls_until_complete(self) -> int:
        """How many GETs of a bulk import job read queued/processing before one runs the
        import and reads complete (0: the first GET completes it)."""
        return self._bulk_imports.settings.polls_until_complete

    @bulk_polls_until_complete.setter
    def bulk_polls_until_complete(self, polls: int) -> None:
        self._bulk_imports.settings.polls_until_complete = polls

    @property
    def bulk_processing_seconds(self) -> float:
        """The least time a bulk import job takes from acceptance to complete."""
        return self._bulk_imports.settings.processing_seconds

    @bulk_processing_seconds.setter
    def bulk_processing_seconds(self, seconds: float) -> None:
        self._bulk_imports.settings.processing_seconds = seconds

    @property
    def bulk_row_error(self) -> RowErrorRule | None:
        """A rule failing chosen rows of bulk imports: attributes -> error code or None."""
        return self._bulk_imports.settings.row_error

    @bulk_row_error.setter
    def bulk_row_error(self, rule: RowErrorRule | None) -> None:
        self._bulk_imports.settings.row_error = rule

    def complete_bulk_import_jobs(self) -> int:
        """Run every unfinished bulk import job now (as if Klaviyo got to them); returns
        how many ran."""
        with self._state.lock:
            pending = [job for job in self._state.bulk_import_jobs.values()
                       if job.status not in ("complete", "cancelled")]
            for job in pending:
                self._bulk_imports.run(job)
            return len(pending)

    # -- request pipeline ------------------------------------------------------------

    def _register_routes(self) -> None:
        served: dict[str, set[str]] = {}
        for method, path, operation_id, handler in self._operations:
            self.server.route(method, path, self._operation(operation_id, handler))
            served.setdefault(path, set()).add(method)
        for path, methods in served.items():
            for method in set(METHODS) - methods:
                self.server.route(method, path, _fail(partial(method_not_allowed, method)))
        # The admin hook (no key, not Klaviyo's API; the contract check leaves /_sandbox/ out).
        self.server.route("POST", r"/_sandbox/profiles/{id}/suppressions", self._admin_suppress)
        for method in METHODS:  # the route pattern is a regex: this one catches everything else
            self.server.route(method, "/.*", _fail(lambda: not_found("Not found.")))

    def _admin_suppress(self, request: Request) -> Response:
        try:
            body = request.json() if request.body else {}
            reason = str(body.get("reason") or "UNSUBSCRIBE") if isinstance(body, dict) else ""
            stamp = self.suppress(request.params["id"], reason)
        except KeyError:
            return Response(404, {"error": "no such profile"})
        except ValueError as exc:
            return Response(400, {"error": str(exc)})
        return Response(201, {"reason": reason, "timestamp": stamp})

    def _operation(self, operation_id: str, handler: Handler) -> Handler:
        def run(request: Request) -> Response:
            with self._state.lock:
                self._state.call_counts[operation_id] += 1
            try:
                self._check_protocol(request)
            except ApiError as error:
                return error.response()
            limiter = self._rate_limiter
            if limiter is None:
                return self._answer(request, operation_id, handler)
            admission = limiter.admit(operation_id)
            if admission.refusal is not None:
                return admission.refusal
            response = self._answer(request, operation_id, handler)
            if response.status in (DROP.status, 429):  # Klaviyo sends no RateLimit-* on a 429
                return response
            # A copy: an interceptor may hand out the same Response object every time.
            return dataclasses.replace(response, headers={**response.headers,
                                                          **admission.headers})
        return run

    def _answer(self, request: Request, operation_id: str, handler: Handler) -> Response:
        try:
            for interceptor in self.interceptors:
                override = interceptor(request, operation_id)
                if override is not None:
                    return override
            with self._state.lock:
                return handler(request)
        except ApiError as error:
            return error.response()

    def _check_protocol(self, request: Request) -> None:
        if request.headers.get("authorization") != f"Klaviyo-API-Key {self.api_key}":
            raise not_authenticated()
        revision = request.headers.get("revision")
        if not revision:
            raise invalid("The 'revision' header is required.", parameter="revision")
        if not REVISION_FORMAT.match(revision):
            raise invalid("Invalid revision format (expected YYYY-MM-DD[.suffix]).",
                          parameter="revision")
        if request.body:
            content_type = request.headers.get("content-type", "")
            if content_type.split(";")[0].strip().lower() != JSON_API:
                raise unsupported_media_type(content_type)


def _fail(error: Callable[[], ApiError]) -> Handler:
    return lambda request: error().response()
