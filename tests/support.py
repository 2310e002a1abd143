"""Helpers every test module shares: a free port, waiting on a real condition, killing a
worker tree, and reading a customer's sync history."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from typing import Any

import redis

from celeryconfig import QUEUES
from sandbox.local_stack import kill_tree
from worker.adapters.broker import queue_depths
from worker.adapters.history import HistoryStore
from worker.adapters.scheduled import ScheduledSteps
from worker.adapters.task_ledger import TaskLedger

__all__ = ["free_port", "history", "kill_tree", "steps_of", "unsettled", "wait_settled",
           "wait_until"]


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(condition: Callable[[], Any], timeout: float, what: str,
               interval: float = 0.05) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout`` seconds.
    Timeouts are generous (a busy CI machine is slow): they bound a failure, not a pass."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)




def history(client: redis.Redis, customer_id: str) -> list[dict[str, Any]]:
    """A customer's sync history, oldest first."""
    raw = client.lrange(HistoryStore(client).key(customer_id), 0, -1)
    return [json.loads(item) for item in reversed(raw)]


def steps_of(client: redis.Redis, customer_id: str) -> dict[str, str]:
    """The latest final outcome per step in a customer's history (retries left out)."""
    return {entry["step"]: entry["outcome"] for entry in history(client, customer_id)
            if entry["outcome"] != "retrying"}


def unsettled(client: redis.Redis) -> list[str]:
    """What could still run: steps open in the task ledger, messages queued or held by a
    worker, retries waiting, subscription actions waiting or in flight. Empty: settled."""
    left = [f"{queue}: {depth}" for queue, depth in queue_depths(client, QUEUES).items()
            if depth]
    if TaskLedger(client).open_count():
        left.append(f"open steps: {TaskLedger(client).open_count()}")
    if ScheduledSteps(client).retrying():
        left.append(f"retries waiting: {ScheduledSteps(client).retrying()}")
    left += [str(k) for k in client.keys("ipk:subs:buf:*") + client.keys("ipk:subs:inflight:*")]
    return left


def wait_settled(client: redis.Redis, timeout: float = 60.0) -> None:
    """Wait until nothing can still run: what has not happened by then will not happen (a
    test proves an absence this way, never by sleeping)."""
    deadline = time.monotonic() + timeout
    while left := unsettled(client):
        assert time.monotonic() < deadline, f"still running after {timeout} s: {left[:10]}"
        time.sleep(0.05)
