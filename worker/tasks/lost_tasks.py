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

from worker.adapters import keys
from worker.adapters.broker import BrokerScan
from worker.adapters.burst_buffer import FLUSH_MARKER_SECONDS, BurstBuffer
from worker.adapters.metrics import Metrics
from worker.adapters.scheduled import ScheduledSteps
from worker.adapters.subscription_buffer import SubscriptionBuffer
from worker.adapters.task_ledger import LedgerEntry, TaskLedger
from worker.config import Settings
from worker.tasks.names import BURST_STEP, FLUSH_BURST, FLUSH_SUBSCRIPTIONS
from worker.tasks.timer_step import TimerStep

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


class LostTaskSweep(TimerStep):
    """Worker bootstep: run ``sweep_lost_tasks`` every ``sweep_interval`` on the timer."""

    def configure(self, settings: Settings) -> None:
        self._after = settings.lost_task_after_seconds
        self._batch_window = settings.subscription_batch_window

    def interval(self, settings: Settings) -> float:
        return sweep_interval(settings.lost_task_after_seconds)

    def tick(self) -> None:
        self.sweep()

    def sweep(self) -> None:
        client = self.client
        if client is None:
            return
        # One sweeper at a time across the fleet; the lock expires before the next tick.
        lock = keys.key(f"{keys.LEDGER}:sweeping")
        interval = sweep_interval(self._after)
        try:
            if not client.set(lock, uuid.uuid4().hex, nx=True, px=int(interval * 900)):
                return
            report = sweep_lost_tasks(TaskLedger(client), BrokerScan(client),
                                      ScheduledSteps(client), self._send_again,
                                      after_seconds=self._after, now=time.time())
            kicked = SubscriptionBuffer(client).claim_stalled(after_seconds=self._after,
                                                              window=self._batch_window)
            for key in kicked:
                self.app.send_task(FLUSH_SUBSCRIPTIONS, kwargs={"key": key})
            resumed = _resume_abandoned_bursts(self.app, BurstBuffer(client))
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
            Metrics(client).incr("lost_tasks_resent_total", {}, len(report.resent))

    def _send_again(self, task_id: str, entry: LedgerEntry) -> None:
        logger.warning("task %s (%s) was lost by the broker; sending it again (resend %d)",
                       task_id, entry.task, entry.resent)
        self.app.send_task(entry.task, kwargs=entry.kwargs, task_id=task_id,
                            queue=entry.queue)


def _resume_abandoned_bursts(app: Any, buffer: BurstBuffer) -> int:
    """The sweep's share for burst batches: a batch whose step let its lease run out died
    with its worker; its step is sent again (the claim inside lets exactly one run), and
    customers left waiting get a flush. Returns how many batches were resumed."""
    abandoned = buffer.abandoned()
    for batch_id in abandoned:
        app.send_task(BURST_STEP, kwargs={"batch_id": batch_id})
    if buffer.waiting() and buffer.claim_flush(FLUSH_MARKER_SECONDS):
        app.send_task(FLUSH_BURST)
    return len(abandoned)
