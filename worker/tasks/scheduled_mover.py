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
from typing import Any

import redis
from celery import bootsteps

from worker import bootstrap
from worker.adapters.scheduled import ScheduledSteps

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


class ScheduledMover(bootsteps.StartStopStep):
    """Worker bootstep: run ``move_due_steps`` every MOVE_INTERVAL_SECONDS on the timer."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._timer_ref: Any = None
        self._client: redis.Redis | None = None
        self._lost_after = 0.0

    def start(self, parent: Any) -> None:
        settings = bootstrap.settings()
        self._lost_after = settings.lost_task_after_seconds
        self._client = redis.Redis.from_url(settings.redis_url, decode_responses=True,
                                            socket_timeout=10)
        self.move()  # at once: retries that fell due while no worker ran
        self._timer_ref = parent.timer.call_repeatedly(MOVE_INTERVAL_SECONDS, self.move,
                                                       priority=10)

    def stop(self, parent: Any) -> None:
        if self._timer_ref is not None:
            self._timer_ref.cancel()
            self._timer_ref = None
        if self._client is not None:
            self._client.close()
            self._client = None

    def move(self) -> None:
        if self._client is None:
            return
        try:
            moved = move_due_steps(ScheduledSteps(self._client), now=time.time(),
                                   lost_after_seconds=self._lost_after)
        except redis.RedisError as exc:
            # The next tick tries again; nothing was taken unless it was also queued.
            logger.warning("moving due retries failed: %s", type(exc).__name__)
            return
        if moved:
            logger.debug("queued %d due retries or delayed steps", moved)
