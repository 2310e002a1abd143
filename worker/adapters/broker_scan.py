"""Which task ids Celery's Redis transport still holds: queued, or delivered and unacknowledged.

Kombu's Redis layout is worker/adapters/broker.py's: every message a worker has received and
not yet acknowledged is in the ``unacked`` hash until its task finished (``acks_late``) or it
is restored to its queue after the visibility timeout. A task id in neither a queue nor
``unacked`` (nor the scheduled-retry set, which the sweep checks too) is not going to run.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import cast

import redis

from worker.adapters.broker import UNACKED_KEY, queue_keys, unacked_key

__all__ = ["UNACKED_KEY", "BrokerScan"]

CHUNK = 2000

# The task id is the first "id" key of a message: its headers come before anything that
# could hold another (the body is base64; correlation_id and root_id are other keys).
_ID_PATTERN = re.compile(r'"id":\s*"([^"]+)"')

# KEYS[1]: a queue list. ARGV: first and last index. Returns the task id of each message, so
# only ids (not whole messages) leave Redis.
_IDS_IN_RANGE = """
local items = redis.call('LRANGE', KEYS[1], ARGV[1], ARGV[2])
local ids = {}
for i, item in ipairs(items) do
  ids[i] = string.match(item, '"id":%s*"([^"]+)"') or ''
end
return ids
"""


class BrokerScan:
    def __init__(self, client: redis.Redis, *, chunk: int = CHUNK) -> None:
        self._redis = client
        self._chunk = chunk
        self._ids_in_range = client.register_script(_IDS_IN_RANGE)

    def held_ids(self, queues: Iterable[str]) -> set[str]:
        """Every task id queued on ``queues`` or unacknowledged anywhere.

        ``unacked`` is read before and after the queues: a message taken off a queue while
        we read it is in ``unacked`` by the second read, and one restored from ``unacked`` to
        its queue (a dead worker's, after the visibility timeout) was there at the first.
        """
        held = self.unacked_ids()
        for queue in queues:
            for key in queue_keys(queue):
                held.update(self._queued_ids(key))
        held.update(self.unacked_ids())
        return held

    def _queued_ids(self, key: str) -> set[str]:
        length = int(cast(int, self._redis.llen(key)))
        ids: set[str] = set()
        for start in range(0, length, self._chunk):
            found = cast(list[str], self._ids_in_range(keys=[key],
                                                       args=[start, start + self._chunk - 1]))
            ids.update(i for i in found if i)
        return ids

    def unacked_ids(self) -> set[str]:
        ids: set[str] = set()
        for _, raw in self._redis.hscan_iter(unacked_key(), count=self._chunk):
            match = _ID_PATTERN.search(str(raw))
            if match:
                ids.add(match.group(1))
        return ids
