"""The scheduled-set mover: every worker queues the retries and delayed sends that are due.

It runs on the worker's event-loop timer every MOVE_INTERVAL_SECONDS, like the lost-task
sweep. One Lua call takes the due entries out of the scheduled set and pushes their messages
onto their queues (worker/adapters/scheduled.py), so any number of workers can run it and
none takes an entry twice. A retry that fell due while no worker ran is queued by the first
worker to start.
"""

from __future__ import annotations

import logging
import time

import redis

from worker.adapters.scheduled import ScheduledSteps
from worker.config import Settings
from worker.tasks.timer_step import TimerStep

logger = logging.getLogger("ipaas_klaviyo.scheduled")

# A retry runs at most about this late; one Redis call a second per worker is cheap.
MOVE_INTERVAL_SECONDS = 0.5
MOVE_LIMIT = 500


def move_due_steps(scheduled: ScheduledSteps, *, now: float, lost_after_seconds: float,
                   limit: int = MOVE_LIMIT) -> int:
    """Queue everything due by ``now``; returns how many messages were queued."""
    moved = 0
    while True:
        batch = scheduled.move_due(now, now + lost_after_seconds, limit)
        moved += batch
        if batch < limit:
            return moved


class ScheduledMover(TimerStep):
    """Worker bootstep: run ``move_due_steps`` every MOVE_INTERVAL_SECONDS on the timer, and
    once as the worker starts (retries that fell due while no worker ran)."""

    run_at_start = True

    def configure(self, settings: Settings) -> None:
        self._lost_after = settings.lost_task_after_seconds

    def interval(self, settings: Settings) -> float:
        return MOVE_INTERVAL_SECONDS

    def tick(self) -> None:
        self.move()

    def move(self) -> None:
        if self.client is None:
            return
        try:
            moved = move_due_steps(ScheduledSteps(self.client), now=time.time(),
                                   lost_after_seconds=self._lost_after)
        except redis.RedisError as exc:
            # The next tick tries again; nothing was taken unless it was also queued.
            logger.warning("moving due retries failed: %s", type(exc).__name__)
            return
        if moved:
            logger.debug("queued %d due retries or delayed steps", moved)
