"""A worker bootstep that runs one job on the worker's event-loop timer, with a Redis client
of its own (the way kombu runs its ``unacked`` restore): the scheduled-set mover and the
lost-task sweep are two of them."""

from __future__ import annotations

from typing import Any

import redis
from celery import bootsteps

from worker import bootstrap
from worker.config import Settings


class TimerStep(bootsteps.StartStopStep):
    """Subclasses set ``interval(settings)`` and ``tick()``; ``configure(settings)`` reads
    what the job needs as the worker starts. ``self.client`` and ``self.app`` are theirs."""

    requires = {"celery.worker.components:Timer"}
    run_at_start = False  # also tick once as the worker starts

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._timer_ref: Any = None
        self.client: redis.Redis | None = None
        self.app: Any = None

    def configure(self, settings: Settings) -> None:
        """Read the settings the job needs (called as the worker starts)."""

    def interval(self, settings: Settings) -> float:
        raise NotImplementedError

    def tick(self) -> None:
        raise NotImplementedError

    def start(self, parent: Any) -> None:
        self.app = parent.app  # sends by task name: no import of the task modules here
        settings = bootstrap.settings()
        self.configure(settings)
        self.client = redis.Redis.from_url(settings.redis_url, decode_responses=True,
                                           socket_timeout=10)
        if self.run_at_start:
            self.tick()
        self._timer_ref = parent.timer.call_repeatedly(self.interval(settings), self.tick,
                                                       priority=10)

    def stop(self, parent: Any) -> None:
        if self._timer_ref is not None:
            self._timer_ref.cancel()
            self._timer_ref = None
        if self.client is not None:
            self.client.close()
            self.client = None
