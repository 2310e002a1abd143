"""Prometheus exposition of the fleet's metrics: counters from Redis, gauges read at scrape.

The webhook receiver serves it at ``GET /metrics``; ``ipaas-klaviyo metrics`` serves it alone
for deployments without the receiver. Either way every scrape reads Redis, so any one
endpoint reports the whole fleet (all workers, all receiver processes). Nothing here is
personal data: names, codes and counts only.

Prometheus usually scrapes without credentials, so the endpoint is open unless
``METRICS_TOKEN`` is set, in which case it wants ``Authorization: Bearer <METRICS_TOKEN>``.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import socketserver
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from worker import bootstrap
from worker.adapters import keys
from worker.adapters.broker import queue_depths
from worker.adapters.burst_buffer import BurstBuffer
from worker.adapters.metrics import COUNTERS, Metrics
from worker.adapters.scheduled import ScheduledSteps
from worker.adapters.task_ledger import TaskLedger
from worker.config import Settings

NAMESPACE = "ipaas_klaviyo"
DEFAULT_PORT = 9108

logger = logging.getLogger("ipaas_klaviyo.metrics")

StartResponse = Callable[..., Any]


class RedisCollector(Collector):
    """Reads every counter and gauge from Redis on each scrape."""

    def __init__(self, client: Any, prefix: str | None = None) -> None:
        self._redis = client
        self._metrics = Metrics(client, prefix)
        # DeadLetterStore's index and drop counter (read directly: no store set-up per scrape).
        self._dead_letter_index = keys.key(f"{keys.DEAD_LETTERS}:by_time", prefix)
        self._dead_letters_dropped = keys.key(f"{keys.DEAD_LETTERS}:dropped_total", prefix)
        self._open_steps = TaskLedger(client, prefix).key

    def collect(self) -> Iterator[Any]:
        up = GaugeMetricFamily(f"{NAMESPACE}_redis_up", "1 if Redis answered this scrape")
        try:
            families = list(self._families())
        except Exception as exc:
            logger.warning("metrics scrape could not read Redis: %s", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _families(self) -> Iterable[Any]:
        for name, values in self._metrics.snapshot().items():
            label_names = sorted({k for key in values for k, _ in key})
            family = CounterMetricFamily(
                f"{NAMESPACE}_{name}", COUNTERS.get(name, name), labels=label_names
            )
            for key, value in sorted(values.items()):
                labels = dict(key)
                family.add_metric([labels.get(n, "") for n in label_names], value)
            yield family
        yield from self._gauges()

    def _gauges(self) -> Iterable[Any]:
        # Imported here: celeryconfig reads the settings when it is imported.
        from celeryconfig import QUEUES

        depths = GaugeMetricFamily(
            f"{NAMESPACE}_queue_depth",
            "Celery messages waiting per queue; unacked: taken by a worker, not yet acknowledged",
            labels=["queue"],
        )
        for queue, depth in queue_depths(self._redis, QUEUES).items():
            depths.add_metric([queue], depth)
        yield depths
        yield GaugeMetricFamily(
            f"{NAMESPACE}_retrying",
            "Steps and subscription batches waiting out a retry in the scheduled set",
            value=ScheduledSteps(self._redis).retrying())
        yield from self._burst_gauges()
        pipe = self._redis.pipeline(transaction=False)
        pipe.zcard(self._dead_letter_index)
        pipe.get(self._dead_letters_dropped)
        pipe.hlen(self._open_steps)
        size, dropped, open_steps = pipe.execute()
        yield GaugeMetricFamily(
            f"{NAMESPACE}_open_steps",
            "Steps sent and not yet at an outcome (the lost-task ledger)", value=int(open_steps))
        yield GaugeMetricFamily(f"{NAMESPACE}_dead_letters", "Entries in the dead-letter store",
                                value=int(size))
        yield CounterMetricFamily(
            f"{NAMESPACE}_dead_letters_dropped", "Dead-letter entries dropped by retention or size",
            value=int(dropped or 0),
        )


    def _burst_gauges(self) -> Iterable[Any]:
        buffer = BurstBuffer(self._redis)
        yield GaugeMetricFamily(f"{NAMESPACE}_burst_mode",
                                "1 while the fleet writes profiles in bulk import jobs",
                                value=int(buffer.mode()))
        yield GaugeMetricFamily(f"{NAMESPACE}_burst_waiting",
                                "Customers waiting for a burst-mode bulk import job",
                                value=buffer.waiting())
        yield GaugeMetricFamily(f"{NAMESPACE}_burst_batches_in_flight",
                                "Burst-mode bulk import batches not yet settled",
                                value=buffer.batches())
        yield GaugeMetricFamily(f"{NAMESPACE}_burst_last_batch_customers",
                                "Customers in the last burst-mode batch taken",
                                value=buffer.last_batch_customers())


def exposition(client: Any) -> bytes:
    """The Prometheus text format of everything in this Redis."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RedisCollector(client))
    return generate_latest(registry)


def authorised(environ: Mapping[str, Any], token: str) -> bool:
    """True when no token is configured or the request carries it as a bearer token."""
    if not token:
        return True
    scheme, _, given = str(environ.get("HTTP_AUTHORIZATION", "")).strip().partition(" ")
    matches = hmac.compare_digest(given.strip().encode(), token.encode())
    return matches and scheme.lower() == "bearer"


def respond(environ: Mapping[str, Any], start_response: StartResponse, client: Any,
            token: str) -> list[bytes]:
    """Answer one scrape (any path, GET or HEAD)."""
    if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
        start_response("405 Method Not Allowed", [("Allow", "GET"),
                                                  ("Content-Type", "text/plain")])
        return [b"use GET\n"]
    if not authorised(environ, token):
        start_response("401 Unauthorized", [("WWW-Authenticate", "Bearer"),
                                             ("Content-Type", "text/plain")])
        return [b"missing or invalid bearer token\n"]
    body = exposition(client)
    start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST),
                              ("Content-Length", str(len(body)))])
    return [body] if environ.get("REQUEST_METHOD") != "HEAD" else []


def metrics_app(client: Any, token: str = "") -> Callable[..., list[bytes]]:
    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        return respond(environ, start_response, client, token)

    return app


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # scrapes are not news
        pass


def serve_metrics(host: str = "0.0.0.0", port: int = DEFAULT_PORT,
                  env: Mapping[str, str] | None = None) -> int:
    """``ipaas-klaviyo metrics``: serve the exposition until interrupted."""
    # Imported per command: the CLI loads only what the command runs.
    from producers.intake import redis_client

    settings = bootstrap.settings() if env is None else Settings.from_env(env)
    app = metrics_app(redis_client(settings.redis_url), settings.metrics_token.value)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    with make_server(host, port, app, server_class=_ThreadingServer,
                     handler_class=_QuietHandler) as server:
        logger.info("serving metrics on %s:%d", host, server.server_port)
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()
    return 0
