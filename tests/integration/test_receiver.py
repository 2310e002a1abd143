"""The webhook receiver's real WSGI app on a loopback server against a real (throwaway)
Redis, with no worker running: what each webhook leaves in the ``profiles`` queue is
inspected directly. The worker-driven end-to-end test is test_receiver_end_to_end.py."""

from __future__ import annotations

import base64
import http.client
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
import redis
from celery import Celery

from producers.intake import TaskMessages
from producers.receiver import ReceiverSettings, WebhookReceiver
from producers.serve import default_workers, workers_from_env
from producers.webhook_parsing import CUSTOMER, SyncRequest
from tests.support import free_port
from worker.adapters.pending import PendingSyncs
from worker.adapters.tombstones import Tombstones
from worker.config import Secret
from worker.core.errors import ConfigurationError

pytestmark = pytest.mark.integration

KEY = "test-webhook-key"
QUEUE = "profiles"


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class Reply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass
class Receiver:
    port: int

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            payload = response.read()
            return Reply(response.status, json.loads(payload), dict(response.getheaders()))
        finally:
            conn.close()

    def post(self, payload: Any, key: str | None = KEY, **headers: str) -> Reply:
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        sent = {"Content-Type": "application/json", **headers}
        if key is not None:
            sent["Authorization"] = f"Bearer {key}"
        return self.request("POST", "/webhooks/ipaas", raw, sent)


def serve_in_thread(app: WebhookReceiver) -> Iterator[Receiver]:
    server = make_server("127.0.0.1", 0, app, server_class=_ThreadingServer,
                         handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Receiver(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def receiver(redis_url: str) -> Iterator[Receiver]:
    # A 4 KiB limit, not the default 1 MiB: the over-limit tests here then send kilobytes,
    # not megabytes. The default limit is exercised by test_receiver_hostile.py.
    settings = ReceiverSettings(Secret(KEY), redis_url, max_body_bytes=4096)
    yield from serve_in_thread(WebhookReceiver(settings))


def queued(client: redis.Redis) -> list[dict[str, Any]]:
    """The kwargs of every task in the profiles queue, oldest first."""
    messages = [json.loads(raw) for raw in reversed(client.lrange(QUEUE, 0, -1))]
    return [json.loads(base64.b64decode(m["body"]))[1] for m in messages]


def envelope(*notifications: dict[str, Any]) -> dict[str, Any]:
    return {"id": "env-1", "attempt": 0, "notifications": list(notifications)}


def note(customer_id: Any, scope: str = "customer/updated", **extra: Any) -> dict[str, Any]:
    return {"scope": scope, "id": customer_id, "destination": "4242", **extra}


# --- envelope variants -----------------------------------------------------------------


def test_envelope_is_accepted_and_each_customer_is_queued_once(
    receiver: Receiver, redis_client: redis.Redis
) -> None:
    reply = receiver.post(envelope(note("1001", tracking_guid="guid-1"),
                                   note(1002, "customer/created/debug")))
    assert reply.status == 202
    assert reply.body == {"accepted": 2, "coalesced": 0, "ignored": 0, "rejected": []}
    assert queued(redis_client) == [
        {"customer_id": "1001", "tracking_guid": "guid-1"},
        {"customer_id": "1002", "tracking_guid": None},
    ]


def test_customer_deleted_tombstones_at_once_and_queues_the_erase_step(
    receiver: Receiver, redis_client: redis.Redis
) -> None:
    reply = receiver.post(envelope(note("1003", "Customer/Deleted"), note("1004")))
    assert reply.status == 202
    assert reply.body == {"accepted": 2, "coalesced": 0, "ignored": 0, "rejected": []}
    assert Tombstones(redis_client).deleted(["1003", "1004"]) == {"1003"}
    messages = [json.loads(raw) for raw in reversed(redis_client.lrange(QUEUE, 0, -1))]
    assert [m["headers"]["task"] for m in messages] == [
        "ipaas_klaviyo.forget_customer", "ipaas_klaviyo.sync_customer"]
    assert queued(redis_client)[0] == {"customer_id": "1003", "tracking_guid": None}


def test_bare_object_bare_list_and_pascal_case(
    receiver: Receiver, redis_client: redis.Redis
) -> None:
    assert receiver.post({"Scope": "Customer/Updated", "Id": "1", "TrackingGuid": "g"}).status \
        == 202
    assert receiver.post([note("2"), {"scope": "customer/created", "external_id": "3"}]).status \
        == 202
    assert receiver.post({"Notifications": [{"SCOPE": "CUSTOMER/CREATED", "ExternalId": 4}]}
                         ).status == 202
    assert [k["customer_id"] for k in queued(redis_client)] == ["1", "2", "3", "4"]
    assert queued(redis_client)[0]["tracking_guid"] == "g"


def test_correlation_header_is_the_fallback_tracking_id(
    receiver: Receiver, redis_client: redis.Redis
) -> None:
    receiver.post(note("7"), **{"x-correlation-id": "corr-7"})
    assert queued(redis_client) == [{"customer_id": "7", "tracking_guid": "corr-7"}]


def test_ignored_scopes_are_acknowledged_and_not_queued(
    receiver: Receiver, redis_client: redis.Redis
) -> None:
    reply = receiver.post(envelope(note("1", "product/poll"), note("2", "giftcard/created")))
    assert reply.status == 202
    assert reply.body == {"accepted": 0, "coalesced": 0, "ignored": 2, "rejected": []}
    assert redis_client.llen(QUEUE) == 0


def test_rejected_notifications_are_listed_and_the_good_ones_still_queued(
    receiver: Receiver, redis_client: redis.Redis
) -> None:
    reply = receiver.post(envelope(note("1"), note("2", "product/poll"), note(None), note("4")))
    assert reply.status == 400
    assert reply.body["accepted"] == 2 and reply.body["ignored"] == 1
    assert reply.body["rejected"] == [{"index": 2, "error": "missing id"}]
    assert "rejected" in reply.body["error"]
    assert [k["customer_id"] for k in queued(redis_client)] == ["1", "4"]


@pytest.mark.parametrize("raw", [b"{not json", b"", b'"customer/updated"', b'{"hello": 1}',
                                 b'{"notifications": "1001"}'])
def test_malformed_bodies_are_400_with_a_reason_and_queue_nothing(
    receiver: Receiver, redis_client: redis.Redis, raw: bytes
) -> None:
    reply = receiver.post(raw)
    assert reply.status == 400
    assert reply.body["error"]
    assert redis_client.llen(QUEUE) == 0


# --- auth and size ---------------------------------------------------------------------


@pytest.mark.parametrize("authorization", [None, "", "Bearer", "Bearer wrong-key",
                                           f"Basic {KEY}", f"Bearer {KEY}x", KEY])
def test_anything_but_the_right_bearer_key_is_401_and_queues_nothing(
    receiver: Receiver, redis_client: redis.Redis, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    reply = receiver.post(note("1"), key=None, **headers)
    assert reply.status == 401
    assert reply.headers.get("WWW-Authenticate") == "Bearer"
    assert redis_client.llen(QUEUE) == 0
    assert redis_client.keys("ipk:pending:*") == []


def test_scheme_is_case_insensitive(receiver: Receiver) -> None:
    assert receiver.post(note("1"), key=None, Authorization=f"bearer {KEY}").status == 202


def test_body_over_the_limit_is_413(receiver: Receiver, redis_client: redis.Redis) -> None:
    big = envelope(*(note(str(i), padding="x" * 100) for i in range(60)))
    assert len(json.dumps(big)) > 4096
    reply = receiver.post(big)
    assert reply.status == 413
    assert redis_client.llen(QUEUE) == 0


def test_declared_length_over_the_limit_is_refused_before_reading(receiver: Receiver) -> None:
    # Content-Length says 10 MB but only a few bytes follow: a server that tried to read the
    # declared body would hang here instead of answering.
    conn = http.client.HTTPConnection("127.0.0.1", receiver.port, timeout=5)
    conn.putrequest("POST", "/webhooks/ipaas")
    conn.putheader("Authorization", f"Bearer {KEY}")
    conn.putheader("Content-Length", str(10_000_000))
    conn.endheaders(b"{}")
    assert conn.getresponse().status == 413
    conn.close()


# --- coalescing ------------------------------------------------------------------------


def test_five_identical_deliveries_queue_one_sync(
    receiver: Receiver, redis_client: redis.Redis
) -> None:
    replies = [receiver.post(note("1001", tracking_guid="g")) for _ in range(5)]
    assert [r.status for r in replies] == [202] * 5
    assert [r.body["accepted"] for r in replies] == [1] * 5
    assert [r.body["coalesced"] for r in replies] == [0, 1, 1, 1, 1]
    assert redis_client.llen(QUEUE) == 1


def test_duplicates_inside_one_envelope_coalesce(
    receiver: Receiver, redis_client: redis.Redis
) -> None:
    reply = receiver.post(envelope(note("1"), note("1", "customer/created"), note("2")))
    assert reply.body["accepted"] == 3 and reply.body["coalesced"] == 1
    assert [k["customer_id"] for k in queued(redis_client)] == ["1", "2"]


def test_a_notification_after_the_sync_started_is_queued_again(
    receiver: Receiver, redis_client: redis.Redis
) -> None:
    receiver.post(note("1001"))
    receiver.post(note("1001"))
    assert redis_client.llen(QUEUE) == 1
    # What sync_customer does as it starts (test_receiver_end_to_end.py runs the real task).
    redis_client.rpop(QUEUE)
    PendingSyncs(redis_client).started(CUSTOMER, "1001")
    assert receiver.post(note("1001")).body["coalesced"] == 0
    assert redis_client.llen(QUEUE) == 1


def test_the_pending_marker_expires(receiver: Receiver, redis_client: redis.Redis) -> None:
    receiver.post(note("1001"))
    ttl = redis_client.ttl("ipk:pending:customer:1001")
    assert 3500 < ttl <= 3600


# --- Redis down, health ----------------------------------------------------------------


@pytest.fixture
def receiver_without_redis() -> Iterator[Receiver]:
    closed = f"redis://127.0.0.1:{free_port()}/0"
    yield from serve_in_thread(WebhookReceiver(ReceiverSettings(Secret(KEY), closed)))


def test_redis_down_is_503_so_ipaas_delivers_again(receiver_without_redis: Receiver) -> None:
    reply = receiver_without_redis.post(note("1001"))
    assert reply.status == 503
    assert reply.body == {"error": "queue unavailable, deliver again later"}


def test_health_with_redis_down(receiver_without_redis: Receiver) -> None:
    health = receiver_without_redis.request("GET", "/healthz")
    assert (health.status, health.body) == (200, {"status": "ok", "redis": "unreachable"})
    assert receiver_without_redis.request("GET", "/readyz").status == 503


def test_health_with_redis_up(receiver: Receiver) -> None:
    health = receiver.request("GET", "/healthz")
    assert (health.status, health.body) == (200, {"status": "ok", "redis": "reachable"})
    assert receiver.request("GET", "/readyz").status == 200


def test_unknown_path_and_wrong_method(receiver: Receiver) -> None:
    assert receiver.request("GET", "/nope").status == 404
    wrong = receiver.request("GET", "/webhooks/ipaas")
    assert (wrong.status, wrong.headers.get("Allow")) == (405, "POST")


# --- the message on the queue is Celery's own ------------------------------------------


def test_queued_message_has_the_shape_celery_itself_publishes(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    app = Celery("ipaas_klaviyo", set_as_current=False)
    app.config_from_object("celeryconfig")
    app.conf.update(broker_url=redis_url, result_backend=redis_url)
    app.send_task("ipaas_klaviyo.sync_customer",
                  kwargs={"customer_id": "1", "tracking_guid": "g"}, ignore_result=True)
    by_celery = json.loads(str(client.rpop(QUEUE)))
    # Sentry's Celery integration, once set up in this process by another test, adds its
    # trace-propagation headers to everything apply_async publishes; they are not Celery's.
    for key in [k for k in by_celery["headers"] if "sentry" in k or k in ("baggage", "headers")]:
        by_celery["headers"].pop(key)
    ours = json.loads(TaskMessages().build(SyncRequest(0, CUSTOMER, "1", "g")).message)
    assert ours.keys() == by_celery.keys()
    per_message = {"id", "root_id", "correlation_id", "delivery_tag", "reply_to"}

    def shared(part: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in part.items() if k not in per_message}

    assert shared(ours["headers"]) == shared(by_celery["headers"])
    assert shared(ours["properties"]) == shared(by_celery["properties"])
    assert ours["properties"].keys() == by_celery["properties"].keys()
    assert ours["headers"]["root_id"] == ours["headers"]["id"]
    assert ours["properties"]["correlation_id"] == ours["headers"]["id"]
    assert base64.b64decode(ours["body"]) == base64.b64decode(by_celery["body"])
    for key in ("body", "content-encoding", "content-type"):
        assert type(ours[key]) is type(by_celery[key])
    client.close()


# --- the real `ipaas-klaviyo serve` ----------------------------------------------------


def test_serve_refuses_to_start_without_a_webhook_key(redis_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "WEBHOOK_API_KEY"}
    env["REDIS_URL"] = redis_url
    done = subprocess.run(
        [sys.executable, "-m", "producers.cli", "serve", "--port", str(free_port())],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2
    assert "WEBHOOK_API_KEY" in done.stderr


# --- configuration ---------------------------------------------------------------------


def test_worker_count_defaults_to_twice_the_cores_plus_one_capped() -> None:
    assert (default_workers(1), default_workers(2), default_workers(64)) == (3, 5, 12)
    assert workers_from_env({"RECEIVER_WORKERS": "7"}) == 7
    for bad in ("0", "-1", "many"):
        with pytest.raises(ConfigurationError):
            workers_from_env({"RECEIVER_WORKERS": bad})


def test_body_limit_comes_from_the_environment() -> None:
    base = {"WEBHOOK_API_KEY": KEY}
    assert ReceiverSettings.from_env(base).max_body_bytes == 1024 * 1024
    assert ReceiverSettings.from_env({**base, "WEBHOOK_MAX_BODY_BYTES": "2048"}
                                     ).max_body_bytes == 2048
    for bad in ("0", "lots"):
        with pytest.raises(ConfigurationError):
            ReceiverSettings.from_env({**base, "WEBHOOK_MAX_BODY_BYTES": bad})


def test_the_app_refuses_a_blank_key() -> None:
    with pytest.raises(ConfigurationError, match="WEBHOOK_API_KEY"):
        WebhookReceiver(ReceiverSettings(Secret("  "), "redis://127.0.0.1:1/0"))


def test_enqueue_survives_a_flushed_script_cache(
    receiver: Receiver, redis_client: redis.Redis
) -> None:
    assert receiver.post(note("1")).status == 202
    redis_client.script_flush()
    assert receiver.post(note("2")).status == 202
    assert [k["customer_id"] for k in queued(redis_client)] == ["1", "2"]
