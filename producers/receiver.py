"""The webhook receiver: a WSGI app that turns iPaaS.com notifications into queued syncs.

``POST /webhooks/ipaas`` checks the bearer key, reads at most the body limit, parses the
notifications (``producers.webhook_parsing``), claims each record in the pending-sync store
and enqueues a sync for every new claim. It answers 202 only once the work is in Redis; when
Redis cannot take it, 503 so iPaaS.com delivers again. ``GET /healthz`` (liveness, never
fails because of Redis) and ``GET /readyz`` (Redis answers PING) serve the orchestrator;
``GET /metrics`` serves the fleet's Prometheus metrics (``producers.metrics_server``).

Every answer settles the request body first (``producers.request_body``), so an early 401,
404, 405 or 413 leaves the keep-alive connection usable, or closes it with
``Connection: close`` when too much of the body is left to read.

Nothing connects at import or construction time: each process (each gunicorn worker, after
the fork) builds its own Redis pool and Celery producer on its first request.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from producers.intake import Intake, QueueUnavailable, build_intake
from producers.metrics_server import respond
from producers.request_body import BodyTooLarge, InvalidLength, RequestBody, close_connection
from producers.webhook_parsing import MalformedBody, parse_body
from worker import bootstrap
from worker.adapters.metrics import Metrics
from worker.config import Secret, Settings
from worker.core.errors import ConfigurationError

WEBHOOK_PATH = "/webhooks/ipaas"
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
_NO_TOKEN = Secret("")

logger = logging.getLogger("ipaas_klaviyo.receiver")

StartResponse = Callable[..., Any]
Environ = dict[str, Any]
_Answer = tuple[str, dict[str, Any], list[tuple[str, str]]]


@dataclass(frozen=True)
class ReceiverSettings:
    webhook_api_key: Secret
    redis_url: str
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    # GET /metrics wants this bearer token when set; open otherwise (firewall it).
    metrics_token: Secret = _NO_TOKEN

    @classmethod
    def from_settings(cls, settings: Settings) -> ReceiverSettings:
        return cls(settings.webhook_api_key, settings.redis_url,
                   settings.webhook_max_body_bytes, settings.metrics_token)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ReceiverSettings:
        """From this process's settings, or from ``env`` (tests)."""
        return cls.from_settings(bootstrap.settings() if env is None else Settings.from_env(env))

    def require_key(self) -> None:
        # An unset key would mean either accepting everyone or refusing everyone; both are
        # worse than not starting.
        if not self.webhook_api_key.value.strip():
            raise ConfigurationError(
                "WEBHOOK_API_KEY is not set: the receiver will not start without a key"
            )


class _Reply(Exception):
    """Ends a request early with a status and a JSON body."""

    def __init__(self, status: str, body: dict[str, Any], headers: list[tuple[str, str]]
                 | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or []


class WebhookReceiver:
    def __init__(
        self,
        settings: ReceiverSettings,
        intake_factory: Callable[[str], Intake] = build_intake,
    ) -> None:
        settings.require_key()
        self.settings = settings
        self._key = settings.webhook_api_key.value.encode()
        self._intake_factory = intake_factory
        self._intake: Intake | None = None
        self._intake_pid: int | None = None
        self._lock = threading.Lock()

    def intake(self) -> Intake:
        """This process's connections, built on first use and again after a fork."""
        pid = os.getpid()
        if self._intake is None or self._intake_pid != pid:
            with self._lock:
                if self._intake is None or self._intake_pid != pid:
                    self._intake = self._intake_factory(self.settings.redis_url)
                    self._intake_pid = pid
        return self._intake

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "").rstrip("/") or "/"
        method = environ.get("REQUEST_METHOD", "GET")
        request_body = RequestBody(environ, self.settings.max_body_bytes)
        if path == "/metrics":  # Prometheus text, not JSON
            self._settle(request_body, environ)
            return respond(environ, start_response, self.intake().redis,
                           self.settings.metrics_token.value)
        routes: dict[str, tuple[str, Callable[[Environ], _Answer]]] = {
            WEBHOOK_PATH: ("POST", lambda env: self._webhook(env, request_body)),
            "/healthz": ("GET", self._healthz), "/readyz": ("GET", self._readyz),
        }
        try:
            if path not in routes:
                raise _Reply("404 Not Found", {"error": "not found"})
            allowed, handler = routes[path]
            if method != allowed:
                raise _Reply("405 Method Not Allowed", {"error": f"use {allowed}"},
                             [("Allow", allowed)])
            status, body, headers = handler(environ)
        except _Reply as reply:
            status, body, headers = reply.status, reply.body, reply.headers
            if path == WEBHOOK_PATH:
                _log_outcome(status, body, environ)
                if not status.startswith("503"):  # 503: Redis is down, nowhere to count
                    Metrics(self.intake().redis).incr(
                        "webhook_requests_total", {"status": status[:3]}
                    )
        self._settle(request_body, environ)
        payload = json.dumps(body, separators=(",", ":")).encode()
        start_response(status, [("Content-Type", "application/json"),
                                ("Content-Length", str(len(payload))), *headers])
        return [payload]

    @staticmethod
    def _settle(request_body: RequestBody, environ: Environ) -> None:
        # Before start_response: the server decides the Connection header from it.
        if not request_body.settle():
            close_connection(environ)

    # --- POST /webhooks/ipaas -------------------------------------------------------------

    def _webhook(self, environ: Environ, request_body: RequestBody) -> _Answer:
        self._authorise(environ)
        limit = self.settings.max_body_bytes
        try:
            raw = request_body.read()
        except InvalidLength:
            raise _Reply("400 Bad Request", {"error": "invalid Content-Length"}) from None
        except BodyTooLarge:
            raise _Reply("413 Content Too Large",
                         {"error": f"body larger than {limit} bytes"}) from None
        try:
            parsed = parse_body(raw, environ.get("HTTP_X_CORRELATION_ID"))
        except MalformedBody as exc:
            raise _Reply("400 Bad Request", {"error": str(exc)}) from None
        try:
            result = self.intake().submit(parsed.requests)
        except QueueUnavailable:
            raise _Reply("503 Service Unavailable",
                         {"error": "queue unavailable, deliver again later"},
                         [("Retry-After", "5")]) from None
        # Transaction notifications with GENERATE_EVENTS off are acknowledged and ignored.
        ignored = parsed.ignored + result.ignored
        body: dict[str, Any] = {
            "accepted": len(parsed.requests) - result.ignored,
            "coalesced": result.coalesced,
            "ignored": ignored,
            "rejected": [r.as_dict() for r in parsed.rejected],
        }
        status = "202 Accepted"
        if parsed.rejected:
            status = "400 Bad Request"
            body["error"] = f"{len(parsed.rejected)} notification(s) rejected; the rest accepted"
        # One round trip for all of a webhook's counts. accepted + coalesced = body's accepted.
        Metrics(self.intake().redis).incr_many([
            ("webhook_requests_total", {"status": status[:3]}, 1),
            ("webhooks_total", {"result": "accepted"}, len(result.enqueued_ids)),
            ("webhooks_total", {"result": "coalesced"}, result.coalesced),
            ("webhooks_total", {"result": "ignored"}, ignored),
            ("webhooks_total", {"result": "rejected"}, len(parsed.rejected)),
        ])
        _log_outcome(status, body, environ, parsed.envelope_id, result.enqueued_ids)
        return status, body, []

    def _authorise(self, environ: Environ) -> None:
        scheme, _, token = environ.get("HTTP_AUTHORIZATION", "").strip().partition(" ")
        # compare_digest runs on every request, matching scheme or not, so timing tells
        # nothing about the key.
        matches = hmac.compare_digest(token.strip().encode(), self._key)
        if not (matches and scheme.lower() == "bearer"):
            raise _Reply("401 Unauthorized", {"error": "missing or invalid bearer token"},
                         [("WWW-Authenticate", "Bearer")])

    # --- health ---------------------------------------------------------------------------

    def _healthz(self, environ: Environ) -> tuple[str, dict[str, Any], list[tuple[str, str]]]:
        redis_state = "reachable" if self.intake().redis_answers() else "unreachable"
        return "200 OK", {"status": "ok", "redis": redis_state}, []

    def _readyz(self, environ: Environ) -> tuple[str, dict[str, Any], list[tuple[str, str]]]:
        if self.intake().redis_answers():
            return "200 OK", {"status": "ready", "redis": "reachable"}, []
        return "503 Service Unavailable", {"status": "unavailable", "redis": "unreachable"}, []


_LOGGED_IDS = 20


def _log_outcome(status: str, body: dict[str, Any], environ: Environ,
                 envelope_id: str | None = None, enqueued_ids: list[str] | None = None) -> None:
    # Ids and counts only: a notification carries no personal data, and neither may this.
    line: dict[str, Any] = {"event": "webhook", "status": int(status[:3])}
    if envelope_id:
        line["envelope_id"] = envelope_id
    for key in ("accepted", "coalesced", "ignored"):
        if key in body:
            line[key] = body[key]
    if body.get("rejected"):
        # The first indices and the count: an envelope may reject thousands.
        line["rejected"] = [r["index"] for r in body["rejected"][:_LOGGED_IDS]]
        line["rejected_count"] = len(body["rejected"])
    if enqueued_ids:
        line["enqueued"] = enqueued_ids[:_LOGGED_IDS]
    if "error" in body and not body.get("rejected"):
        line["error"] = body["error"]
    correlation = environ.get("HTTP_X_CORRELATION_ID")
    if correlation:
        line["correlation_id"] = correlation[:128]
    logger.info(json.dumps(line, separators=(",", ":")))


def create_app(env: Mapping[str, str] | None = None) -> WebhookReceiver:
    """The receiver configured from the environment (refuses an unset WEBHOOK_API_KEY)."""
    return WebhookReceiver(ReceiverSettings.from_env(env))
