"""Fleet-wide counters in Redis, read by the Prometheus exporter at scrape time.

Counters live in Redis, not in process memory: Celery prefork children and gunicorn workers
are many short-lived processes, and Prometheus should see one number per label set for the
whole fleet. Each counter is a hash ``{prefix}:metrics:{name}`` whose fields encode the
sorted labels; every increment is one pipelined round trip. Counting never fails a sync or a
webhook: a Redis error is logged at debug level and forgotten.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from worker.adapters import keys
from worker.adapters.http import ResponseHook
from worker.core.errors import ThrottledError

logger = logging.getLogger("ipaas_klaviyo.metrics")

Labels = dict[str, str]
LabelKey = tuple[tuple[str, str], ...]
Increment = tuple[str, Labels, int]

# name -> help text; the exporter publishes these (and any other name that was counted).
COUNTERS: dict[str, str] = {
    "webhooks_total": "Webhook notifications by result (accepted, coalesced, ignored, rejected)",
    "webhook_requests_total": "Webhook HTTP requests by response status",
    "syncs_total": "Sync steps finished, by step and outcome",
    "retries_total": "Sync steps scheduled for another attempt, by step",
    "klaviyo_calls_total": "Klaviyo API calls by operation and HTTP status (error: no answer)",
    "ipaas_calls_total": "iPaaS.com API calls by operation and HTTP status (error: no answer)",
    "throttled_total": "Calls held back: klaviyo = a 429, limiter = no slot within the wait",
    "lost_tasks_resent_total": "Steps sent again after the broker lost their message",
    "consent_sync_profiles_total": "Profiles read by consent-sync, by result",
    "burst_switches_total": "Burst mode switched on or off (label to)",
    "burst_batches_total": "Bulk import batches taken in burst mode",
    "burst_batch_customers_total": "Customers taken into burst batches (÷ batches: per batch)",
    "burst_fallbacks_total": "Customers a burst batch sent back to the single-write path",
}


# Counters also kept per minute (name -> the label they are split by), for the console's
# chart of the last hour: ``{prefix}:metrics:minute:{name}:{epoch minute}``, a hash
# label value -> count, expiring after two hours.
PER_MINUTE: dict[str, str] = {"syncs_total": "outcome"}
PER_MINUTE_KEEP_SECONDS = 2 * 3600


def encode_labels(labels: Labels) -> str:
    return json.dumps(sorted((str(k), str(v)) for k, v in labels.items()), separators=(",", ":"))


def decode_labels(field: str) -> LabelKey:
    return tuple((str(k), str(v)) for k, v in json.loads(field))


def status_label(status: int) -> str:
    """The HttpAdapter hook's status as a label: 0 means no HTTP answer at all."""
    return str(status) if status else "error"


class Metrics:
    def __init__(self, client: Any, prefix: str | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._redis = client
        self._base = keys.key(keys.METRICS, prefix)
        self._clock = clock

    def minute_key(self, name: str, minute: int) -> str:
        return f"{self._base}:minute:{name}:{minute}"

    def per_minute(self, name: str, minutes: int = 60) -> list[tuple[int, dict[str, int]]]:
        """The last ``minutes`` minutes of a PER_MINUTE counter, oldest first, the current
        minute last: (epoch minute, {label value: count})."""
        now = int(self._clock() // 60) * 60
        starts = [now - 60 * back for back in range(minutes - 1, -1, -1)]
        pipe = self._redis.pipeline(transaction=False)
        for start in starts:
            pipe.hgetall(self.minute_key(name, start))
        return [(start, {_text(k): int(v) for k, v in (fields or {}).items()})
                for start, fields in zip(starts, pipe.execute(), strict=True)]

    def key(self, name: str) -> str:
        return f"{self._base}:{name}"

    @property
    def names_key(self) -> str:
        return f"{self._base}:names"

    def incr(self, name: str, labels: Labels, n: int = 1) -> None:
        self.incr_many([(name, labels, n)])

    def incr_many(self, increments: Iterable[Increment]) -> None:
        """Several counters in one round trip; zero increments are skipped."""
        todo = [(name, labels, n) for name, labels, n in increments if n]
        if not todo:
            return
        try:
            pipe = self._redis.pipeline(transaction=False)
            for name, labels, n in todo:
                pipe.hincrby(self.key(name), encode_labels(labels), n)
            pipe.sadd(self.names_key, *{name for name, _, _ in todo})
            minute = int(self._clock() // 60) * 60
            for name, labels, n in todo:
                if name in PER_MINUTE:
                    key = self.minute_key(name, minute)
                    pipe.hincrby(key, labels.get(PER_MINUTE[name], ""), n)
                    pipe.expire(key, PER_MINUTE_KEEP_SECONDS)
            pipe.execute()
        except Exception as exc:  # a lost count must never fail the work being counted
            logger.debug("metrics not counted: %s", type(exc).__name__)

    def snapshot(self) -> dict[str, dict[LabelKey, int]]:
        """Every counter's values by label set (raises if Redis cannot answer: the exporter
        reports that as ``redis_up 0``)."""
        names = sorted(set(COUNTERS) | {str(n) for n in self._redis.smembers(self.names_key)})
        pipe = self._redis.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(self.key(name))
        out: dict[str, dict[LabelKey, int]] = {}
        for name, fields in zip(names, pipe.execute(), strict=True):
            out[name] = {decode_labels(_text(f)): int(v) for f, v in (fields or {}).items()}
        return out

    # --- hooks for the adapters -------------------------------------------------------------

    def http_counter(self, counter: str, throttled_source: str | None = None) -> ResponseHook:
        """An ``HttpAdapter.on_response`` hook counting calls into ``counter``; a 429 also
        counts as throttled by ``throttled_source`` when given."""

        def on_response(operation: str, status: int) -> None:
            increments: list[Increment] = [
                (counter, {"endpoint": operation, "status": status_label(status)}, 1)
            ]
            if status == 429 and throttled_source:
                increments.append(("throttled_total", {"source": throttled_source}, 1))
            self.incr_many(increments)

        return on_response


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class SlotLimiter(Protocol):
    def acquire(self, tier: str, max_wait: float | None = None) -> float: ...

    def penalize(self, tier: str, seconds: float) -> None: ...


class CountingLimiter:
    """A rate limiter that counts the slots it could not grant within the allowed wait."""

    def __init__(self, inner: SlotLimiter, metrics: Metrics) -> None:
        self._inner = inner
        self._metrics = metrics

    def acquire(self, tier: str, max_wait: float | None = None) -> float:
        try:
            return self._inner.acquire(tier, max_wait)
        except ThrottledError:
            self._metrics.incr("throttled_total", {"source": "limiter"})
            raise

    def penalize(self, tier: str, seconds: float) -> None:
        self._inner.penalize(tier, seconds)
