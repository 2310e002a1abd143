"""Draining queued customer syncs into the burst buffer in bulk.

In burst mode a queued ``sync_customer`` would only leave its customer in the burst buffer,
one task each; a flush takes the messages off the queue a thousand at a time instead.
"""

from __future__ import annotations

from typing import cast

import redis

from worker.adapters.broker import queue_key, task_call
from worker.adapters.burst_buffer import BurstBuffer
from worker.core.burst import WaitingSync


def drain_syncs(client: redis.Redis, buffer: BurstBuffer, queue: str, task_name: str,
                limit: int, now: float) -> list[WaitingSync]:
    """Take up to ``limit`` queued ``task_name`` messages off ``queue`` (oldest first, as a
    worker would) and make them wait in ``buffer``. Other messages, and syncs that must
    write alone, go back to the queue's consuming end. A crash between popping and adding
    loses nothing for good: every queued sync has a ledger entry, and the lost-task sweep
    sends it again."""
    # Counted in the backlog while the popped syncs are on their way to the buffer, so no
    # sync looking at the backlog meanwhile takes the burst for over.
    client.set(buffer.key("draining"), limit, ex=30)
    popped = cast(list[str] | None, client.rpop(queue_key(queue), limit)) or []
    syncs: list[WaitingSync] = []
    others: list[str] = []
    for message in popped:
        call = task_call(message)
        if call is None or call[0] != task_name or call[2].get("single_write"):
            others.append(message)
            continue
        _, task_id, kwargs = call
        syncs.append(WaitingSync(str(kwargs.get("customer_id")), task_id,
                                 kwargs.get("tracking_guid"), bool(kwargs.get("force")), now))
    if others:
        client.rpush(queue_key(queue), *reversed(others))  # back where they were taken
    buffer.add_many(syncs)
    client.delete(buffer.key("draining"))
    return syncs
