"""consent-sync: Klaviyo-side opt-outs written back to iPaaS.com.

One pass lists the profiles whose email suppression is newer than the watermark (an
unsubscribe, a spam complaint, a bounce, a manual suppression), oldest first, 100 a call.
For each one linked to an iPaaS.com customer (our link store, else the profile's
``external_id``) and opted out, it reads the customer and, unless ``SubscribeProfile`` is
already false, writes it back as false with the customer update. From then on the
customer's own field says false, so no later sync subscribes the person again.

A fleet-wide lock lets one pass run at a time. The cursor (worker/core/consent_back.py) is
saved after every page and whenever a pass stops, so it resumes where it was; after a crash
in the middle of a page the page's profiles are read again, and those already written back
read as false and are not written twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from worker.adapters.ipaas import UNAUTHORIZED_MESSAGE
from worker.adapters.klaviyo.consent import KlaviyoConsent
from worker.adapters.locks import RedisLock
from worker.adapters.stores import CheckpointStore
from worker.adapters.tombstones import Tombstones
from worker.bootstrap import Container
from worker.core import consent_back as cb
from worker.core.errors import FinalError, NotFoundError, RetryableError, StepOutcome
from worker.core.reconcile import format_time
from worker.core.retry import Done, GiveUp, RetryPolicy, attempt, decide

logger = logging.getLogger("ipaas_klaviyo.consent")

CONSENT_STEP = "consent"
LAST_PASS_NAME = "consent-sync:last_pass"
CURSOR_NAME = "consent-sync"
LOCK_NAME = "consent-sync"
# Renewed after every page: it only has to outlast one page and its retries.
LOCK_TTL_SECONDS = 600.0
CALL_RETRY = RetryPolicy(max_attempts=5, base_seconds=1.0, cap_seconds=30.0)
# History outcomes per result (the step's timeline in `status`).
_HISTORY = {cb.WRITTEN_BACK: "written_back", cb.ALREADY_FALSE: "already_false",
            cb.DELETED: "skipped", cb.NOT_OPTED_OUT: "skipped", cb.FAILED: "rejected"}


class ConsentSyncBusy(Exception):
    """Another process holds the consent-sync lock; nothing was done."""


class PassStopped(Exception):
    """A call kept failing (or its retry would pass the deadline): the cursor stays."""


# Why a pass stopped when only its time slice ran out: the next slice goes on at once.
OUT_OF_TIME = "deadline"


@dataclass
class ConsentReport:
    since: datetime
    watermark: datetime
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("pages", "seen", *cb.OUTCOMES), 0))
    finished: bool = True  # False: stopped early; the cursor holds the rest
    stopped: str | None = None  # why a pass stopped before the end (an error type)

    def summary(self) -> str:
        c = self.counts
        tail = ""
        if self.stopped:
            tail = f" | stopped ({self.stopped}); the next run resumes"
        elif not self.finished:
            tail = " | paused at the end of its time slice (continues)"
        return (f"consent-sync since {cb.filter_time(self.since)}: pages {c['pages']:,}, "
                f"seen {c['seen']:,}, written back {c[cb.WRITTEN_BACK]:,}, "
                f"already false {c[cb.ALREADY_FALSE]:,}, unlinked {c[cb.UNLINKED]:,}, "
                f"not opted out {c[cb.NOT_OPTED_OUT]:,}, deleted {c[cb.DELETED]:,}, "
                f"failed {c[cb.FAILED]:,} | watermark {cb.filter_time(self.watermark)}{tail}")

    def as_dict(self) -> dict[str, Any]:
        return {"since": cb.filter_time(self.since), "watermark": cb.filter_time(self.watermark),
                "counts": dict(self.counts), "finished": self.finished, "stopped": self.stopped}


class ConsentSync:
    def __init__(self, c: Container, *, lookback_seconds: float | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 after_profile: Callable[[str, str], None] | None = None) -> None:
        self.c = c
        self.klaviyo = KlaviyoConsent(c.klaviyo)
        self.cursors = CheckpointStore(c.redis)
        self.tombstones = Tombstones(c.redis)
        self.lookback = timedelta(seconds=lookback_seconds if lookback_seconds is not None
                                  else c.settings.reconcile_lookback_seconds)
        self._sleep, self._clock = sleep, clock
        # Called with (profile id, outcome) once a profile is fully handled (tests: a crash).
        self._after_profile = after_profile

    def cursor(self) -> cb.ConsentCursor | None:
        saved = self.cursors.load(CURSOR_NAME)
        return cb.ConsentCursor.from_dict(saved) if saved else None

    def run(self, since: datetime | None = None, *, deadline: float | None = None
            ) -> ConsentReport:
        """One pass from the watermark (or ``since``). Raises ConsentSyncBusy when another
        pass holds the lock. ``deadline`` (``time.monotonic()``): stop there, cursor saved,
        with ``finished=False``."""
        lock = RedisLock(self.c.redis, LOCK_NAME, LOCK_TTL_SECONDS)
        if not lock.acquire():
            raise ConsentSyncBusy()
        try:
            return self._run_locked(since, lock, deadline)
        finally:
            lock.release()

    def _start(self, since: datetime | None) -> cb.ConsentCursor:
        saved = None if since is not None else self.cursor()
        if saved is not None:
            return saved
        cursor = cb.ConsentCursor(since or self._clock() - self.lookback)
        self.cursors.save(CURSOR_NAME, cursor.as_dict())
        return cursor

    def _run_locked(self, since: datetime | None, lock: RedisLock, deadline: float | None
                    ) -> ConsentReport:
        cursor = self._start(since)
        report = ConsentReport(cursor.watermark, cursor.watermark)
        try:
            for page in self._pages(cursor, deadline):
                report.counts["pages"] += 1
                if not self._page(page, cursor, report, deadline):
                    report.finished = False
                    break
                lock.renew()
        except PassStopped as stop:
            report.finished = False
            report.stopped = None if str(stop) == OUT_OF_TIME else str(stop)
        finally:
            self.cursors.save(CURSOR_NAME, cursor.as_dict())
            report.watermark = cursor.watermark
        if report.finished:
            # What the operator console shows as the last pass.
            self.cursors.save(LAST_PASS_NAME, {
                "finished_at": format_time(self._clock()), "counts": dict(report.counts),
                "watermark": format_time(cursor.watermark)})
        return report

    def _pages(self, cursor: cb.ConsentCursor, deadline: float | None
               ) -> Iterator[list[dict[str, Any]]]:
        """The pages from the cursor's watermark on. A failed page is asked for again from
        the cursor as it then stands (its handled profiles are skipped), under the one retry
        rule."""
        failures, first_failure = 0, 0.0
        while True:
            try:
                for page in self.klaviyo.suppressed_since(cursor.watermark):
                    failures = 0
                    yield page
                return
            except RetryableError as exc:
                first_failure = first_failure if failures else time.monotonic()
                decision = decide(exc, failures, time.monotonic() - first_failure, CALL_RETRY)
                if isinstance(decision, GiveUp):
                    raise PassStopped(type(exc).__name__) from None
                if deadline is not None and time.monotonic() + decision.delay > deadline:
                    raise PassStopped(OUT_OF_TIME) from None
                failures = decision.attempts
                self._sleep(decision.delay)

    def _page(self, page: list[dict[str, Any]], cursor: cb.ConsentCursor,
              report: ConsentReport, deadline: float | None) -> bool:
        """Handle a page's new profiles; False when the deadline came first."""
        fresh = [p for p in page if isinstance(p.get("id"), str)
                 and not cursor.handled(p["id"]) and cb.suppression_time(p) is not None]
        linked = self.c.links.customers_for([p["id"] for p in fresh])
        customers = {p["id"]: linked.get(p["id"]) or _external_id(p) for p in fresh}
        # Nothing is read or written for an erased customer, history included.
        deleted = self.tombstones.deleted([c for c in customers.values() if c])
        counted: dict[str, int] = {}
        try:
            for profile in fresh:
                if deadline is not None and time.monotonic() >= deadline:
                    return False
                profile_id = profile["id"]
                customer_id = customers[profile_id]
                outcome = (cb.DELETED if customer_id in deleted
                           else self._profile(profile, customer_id, deadline))
                report.counts["seen"] += 1
                report.counts[outcome] += 1
                counted[outcome] = counted.get(outcome, 0) + 1
                stamp = cb.suppression_time(profile)
                assert stamp is not None
                cursor.done(profile_id, stamp)
                if self._after_profile is not None:
                    self._after_profile(profile_id, outcome)
        finally:
            # One round trip per page for the metrics, one for the cursor.
            self.c.metrics.incr_many([("consent_sync_profiles_total", {"result": outcome}, n)
                                      for outcome, n in counted.items()])
            self.cursors.save(CURSOR_NAME, cursor.as_dict())
        return True

    def _profile(self, profile: dict[str, Any], customer_id: str | None,
                 deadline: float | None) -> str:
        if not customer_id:
            return cb.UNLINKED
        if not cb.opted_out(profile):
            return self._record(customer_id, cb.NOT_OPTED_OUT, profile["id"])
        try:
            customer = self._call(lambda: self.c.ipaas.get_customer(customer_id), deadline)
            if cb.subscribe_field(customer) is False:
                return self._record(customer_id, cb.ALREADY_FALSE, profile["id"])
            updated = cb.with_subscribe_false(customer)
            self._call(lambda: self.c.ipaas.update_customer(customer_id, updated), deadline)
        except NotFoundError:
            return self._record(customer_id, cb.DELETED, profile["id"], "customer_not_found")
        except FinalError as exc:
            if str(exc) == UNAUTHORIZED_MESSAGE:
                # Not this customer's problem: stop, so the watermark does not move past
                # everyone while the token is wrong.
                raise PassStopped("ipaas unauthorized") from None
            logger.warning("consent-sync: customer %s not written back (%s)", customer_id,
                           type(exc).__name__)
            return self._record(customer_id, cb.FAILED, profile["id"],
                                getattr(exc, "reason", None) or "ipaas_rejected")
        return self._record(customer_id, cb.WRITTEN_BACK, profile["id"])

    def _record(self, customer_id: str, outcome: str, profile_id: str,
                reason: str | None = None) -> str:
        if outcome == cb.NOT_OPTED_OUT:
            reason = cb.NOT_OPTED_OUT  # "skipped" alone would not say why
        step = StepOutcome(CONSENT_STEP, _HISTORY[outcome], reason, profile_id=profile_id)
        self.c.history.record(customer_id, step)
        return outcome

    def _call(self, call: Callable[[], Any], deadline: float | None) -> Any:
        """``call`` under the one retry rule, waiting in place; PassStopped when the rule
        gives up or the next wait would pass the deadline."""
        attempts, first = 0, time.monotonic()
        while True:
            result = attempt(call, attempts, time.monotonic() - first, CALL_RETRY)
            if isinstance(result, Done):
                return result.value
            if isinstance(result, GiveUp):
                if isinstance(result.exception, FinalError) or result.exception is None:
                    raise result.exception or PassStopped(result.reason)
                raise PassStopped(type(result.exception).__name__) from None
            if deadline is not None and time.monotonic() + result.delay > deadline:
                raise PassStopped(OUT_OF_TIME)
            attempts = result.attempts
            self._sleep(result.delay)


def _external_id(profile: dict[str, Any]) -> str | None:
    attributes = profile.get("attributes")
    value = attributes.get("external_id") if isinstance(attributes, dict) else None
    return str(value) if value else None
