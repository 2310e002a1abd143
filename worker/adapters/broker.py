"""The one module that knows kombu's Redis wire format and keys.

Celery's Redis transport keeps each queue as a list (one more per message priority,
``{queue}\\x06\\x16{priority}``), consumed with BRPOP from the right, and every message a
worker received and has not acknowledged in the ``unacked`` hash. ``TaskMessages`` builds a
task message exactly as ``apply_async`` would publish it, without a broker connection, so a
message can be LPUSHed by a Lua script: the receiver's claim-and-push and the scheduled-retry
mover (worker/adapters/scheduled.py) both push messages built here.
tests/integration/test_receiver.py proves a real worker consumes them. ``BrokerScan`` tells
which task ids the transport still holds (queued, or delivered and unacknowledged) for the
lost-task sweep: a task id in neither a queue nor ``unacked`` (nor the scheduled set, which
the sweep checks too) is not going to run.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Iterable
from typing import Any, cast

import redis

from worker.adapters import keys

PRIORITY_SEPARATOR = "\x06\x16"
PRIORITY_STEPS = (3, 6, 9)  # priority 0 is the queue's own list
UNACKED_KEY = "unacked"


def queue_key(queue: str) -> str:
    """The Redis list of ``queue`` (Celery's keys carry REDIS_KEY_PREFIX unless it is the
    default: worker/adapters/keys.py)."""
    return keys.celery_prefix() + queue


def queue_keys(queue: str) -> list[str]:
    """Every Redis list that holds messages of ``queue``."""
    base = queue_key(queue)
    return [base, *(f"{base}{PRIORITY_SEPARATOR}{p}" for p in PRIORITY_STEPS)]


def unacked_key() -> str:
    """The hash of messages delivered to a worker and not yet acknowledged."""
    return keys.celery_prefix() + UNACKED_KEY


def queue_of(task_name: str) -> str:
    """The queue a task is routed to (celeryconfig.task_routes)."""
    # Imported when used: celeryconfig reads the settings when it is imported.
    import celeryconfig  # read at call time: celeryconfig reads Settings when imported

    return str(celeryconfig.task_routes.get(task_name, {}).get("queue")
               or celeryconfig.task_default_queue)


class TaskMessages:
    """Celery task messages in kombu's Redis wire format, built without touching a broker.

    Celery builds one template message per task (its headers, in its protocol); each
    message then only gets its own ids and arguments. ``ignore_result``: the worker stores no
    result (a webhook's task: nobody waits on it, its outcome goes to the history store).
    Messages built here emit no ``task-sent`` event; the worker's own events still flow.
    """

    def __init__(self) -> None:
        # Imported when used: celeryconfig reads the settings when it is imported.
        from celery import Celery

        import celeryconfig

        app = Celery("ipaas_klaviyo", set_as_current=False)
        app.config_from_object(celeryconfig)
        self._amqp = app.amqp
        self._templates: dict[tuple[str, bool], dict[str, Any]] = {}

    def build(self, task_name: str, kwargs: dict[str, Any], *, task_id: str | None = None,
              ignore_result: bool = True) -> tuple[str, str, str]:
        """(task id, queue, message JSON) for one call of ``task_name`` with ``kwargs``."""
        queue = queue_of(task_name)
        task_id = task_id or str(uuid.uuid4())
        template = self._template(task_name, ignore_result)
        body = [[], kwargs, template["embed"]]
        envelope = {
            "body": base64.b64encode(json.dumps(body).encode()).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {**template["headers"], "id": task_id, "root_id": task_id,
                        # Ids and flags only: repr is what Celery's saferepr gives for them.
                        "kwargsrepr": repr(kwargs)},
            "properties": {
                **template["properties"],
                "correlation_id": task_id,
                "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": queue},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
            },
        }
        return task_id, queue, json.dumps(envelope)

    def _template(self, task_name: str, ignore_result: bool) -> dict[str, Any]:
        key = (task_name, ignore_result)
        if key not in self._templates:
            message = self._amqp.create_task_message(
                "template", task_name, (), {}, ignore_result=ignore_result
            )
            self._templates[key] = {
                "headers": dict(message.headers),
                "properties": dict(message.properties),
                "embed": message.body[2],
            }
        return self._templates[key]


def queue_depths(client: Any, queues: Iterable[str]) -> dict[str, int]:
    """Messages waiting per queue (every priority list), plus ``unacked``: the messages
    workers hold (running or prefetched), not yet acknowledged."""
    names = list(queues)
    pipe = client.pipeline(transaction=False)
    for queue in names:
        for key in queue_keys(queue):
            pipe.llen(key)
    pipe.hlen(unacked_key())
    counts = [int(n) for n in pipe.execute()]
    per_queue = len(PRIORITY_STEPS) + 1
    depths = {q: sum(counts[i * per_queue:(i + 1) * per_queue]) for i, q in enumerate(names)}
    depths["unacked"] = counts[-1]
    return depths


def task_call(message: str) -> tuple[str, str, dict[str, Any]] | None:
    """(task name, task id, keyword arguments) of a queued message; None when it is not a
    Celery task message in the format built above."""
    try:
        envelope = json.loads(message)
        headers = envelope["headers"]
        body = json.loads(base64.b64decode(envelope["body"]))
        kwargs = body[1]
        if not isinstance(kwargs, dict):
            return None
        return str(headers["task"]), str(headers["id"]), kwargs
    except (ValueError, KeyError, TypeError, IndexError):
        return None


# -- which task ids the transport still holds ---------------------------------------

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
