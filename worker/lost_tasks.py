"""The lost-task sweep: send again the steps whose message the broker lost.

Every worker runs it on its event loop's timer (the way kombu runs its own ``unacked``
restore), and a short Redis lock lets one of them sweep at a time. A sweep takes the ledger
entries past their due time (worker/adapters/task_ledger.py), looks for their task ids in
the queues and the ``unacked`` hash, postpones those still held (queued behind a backlog,
running, or waiting in the scheduled set for its retry) and sends the others again with the
same id.
A batched lists step is the subscription buffer's once queued: the sweep also gives a flush
to every batch key whose items or in-flight batch have waited that long without one.

Sending a step twice is harmless (every step is idempotent); never sending it again would
lose the customer. A task that keeps failing before it reaches an outcome (say Redis
failing under it) is therefore sent again every LOST_TASK_AFTER_SECONDS until it reaches
one, and each resend is logged and counted.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import redis
from celery import bootsteps

from worker.adapters.broker_scan import BrokerScan
from worker.adapters.scheduled import ScheduledSteps
from worker.adapters.task_ledger import LedgerEntry, TaskLedger

logger = logging.getLogger("ipaas_klaviyo.lost_tasks")

Send = Callable[[str, LedgerEntry], None]


@dataclass
class SweepReport:
    due: int = 0
    still_held: int = 0
    resent: list[str] = field(default_factory=list)


def sweep_interval(after_seconds: float) -> float:
    """A fifth of the grace, between 1 s and a minute: a lost task is sent again at most
    ~1.2 x LOST_TASK_AFTER_SECONDS after its last sign of life."""
    return max(1.0, min(60.0, after_seconds / 5))


def sweep_lost_tasks(ledger: TaskLedger, scan: BrokerScan, scheduled: ScheduledSteps,
                     send: Send, *, after_seconds: float, now: float) -> SweepReport:
    report = SweepReport()
    due = ledger.due()
    report.due = len(due)
    if not due:
        return report
    # A retry waiting in the scheduled set is held too (its ledger entry is normally due
    # after it, but a retry made due now by a replay may not be queued yet).
    held = scheduled.held([task_id for task_id, _ in due])
    held |= scan.held_ids({entry.queue for _, entry in due})
    for task_id, entry in due:
        if task_id in held:
            ledger.postpone(task_id, now + after_seconds)
            report.still_held += 1
            continue
        resend = replace(entry, resent=entry.resent + 1)
        # Postponing first checks the entry is still open: a task that finished while we
        # scanned is not sent again.
        if ledger.postpone(task_id, now + after_seconds, resend):
            send(task_id, resend)
            report.resent.append(task_id)
    return report


class LostTaskSweep(bootsteps.StartStopStep):
    """Worker bootstep: run ``sweep_lost_tasks`` every ``sweep_interval`` on the timer."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._timer_ref: Any = None
        self._client: redis.Redis | None = None
        self._after = 0.0
        self._batch_window = 0.0

    def start(self, parent: Any) -> None:
        from worker.config import Settings

        settings = Settings.from_env()
        self._after = settings.lost_task_after_seconds
        self._batch_window = settings.subscription_batch_window
        self._client = redis.Redis.from_url(settings.redis_url, decode_responses=True,
                                            socket_timeout=10)
        self._timer_ref = parent.timer.call_repeatedly(
            sweep_interval(self._after), self.sweep, priority=10)

    def stop(self, parent: Any) -> None:
        if self._timer_ref is not None:
            self._timer_ref.cancel()
            self._timer_ref = None
        if self._client is not None:
            self._client.close()
            self._client = None

    def sweep(self) -> None:
        client = self._client
        if client is None:
            return
        # One sweeper at a time across the fleet; the lock expires before the next tick.
        lock = "ipk:ledger:sweeping"
        interval = sweep_interval(self._after)
        try:
            if not client.set(lock, uuid.uuid4().hex, nx=True, px=int(interval * 900)):
                return
            report = sweep_lost_tasks(TaskLedger(client), BrokerScan(client),
                                      ScheduledSteps(client), _send_again,
                                      after_seconds=self._after, now=time.time())
            kicked = _kick_stalled_batches(client, self._after, self._batch_window)
            resumed = _kick_abandoned_bursts(client)
        except redis.RedisError as exc:
            # The next tick tries again; the worker's own Redis troubles show elsewhere.
            logger.warning("lost-task sweep failed: %s", type(exc).__name__)
            return
        if resumed:
            logger.warning("resuming %d burst batch(es) whose step died", resumed)
        if kicked:
            logger.warning("scheduled a flush for %d subscription batch key(s) whose flush "
                           "was lost", len(kicked))
        if report.resent:
            logger.warning("sent %d lost task(s) again (of %d due, %d still queued or "
                           "running)", len(report.resent), report.due, report.still_held)
            from worker.adapters.metrics import Metrics

            Metrics(client).incr("lost_tasks_resent_total", {}, len(report.resent))


def _kick_stalled_batches(client: redis.Redis, after_seconds: float,
                          window: float) -> list[str]:
    from worker.adapters.subscription_buffer import SubscriptionBuffer
    from worker.batch_tasks import kick_stalled_batches

    return kick_stalled_batches(SubscriptionBuffer(client), after_seconds=after_seconds,
                                window=window)


def _kick_abandoned_bursts(client: redis.Redis) -> int:
    from worker.adapters.burst_buffer import BurstBuffer
    from worker.burst_tasks import kick_abandoned_bursts

    return kick_abandoned_bursts(BurstBuffer(client))


def _send_again(task_id: str, entry: LedgerEntry) -> None:
    from worker.celery_app import app

    logger.warning("task %s (%s) was lost by the broker; sending it again (resend %d)",
                   task_id, entry.task, entry.resent)
    app.send_task(entry.task, kwargs=entry.kwargs, task_id=task_id, queue=entry.queue)
