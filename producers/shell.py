"""``ipaas-klaviyo shell``: a Python prompt with the stores, replay and queues at hand.

``build_namespace`` makes the helpers without a terminal, so tests drive the very functions
an operator types. Helpers print ids, reason codes and counts; the records themselves stay
in iPaaS.com and Klaviyo.
"""

from __future__ import annotations

import code
import sys
from dataclasses import dataclass
from typing import Any

import redis

from worker import bootstrap
from worker.adapters.dead_letters import DeadLetterStore
from worker.adapters.history import HistoryStore
from worker.adapters.links import LinkStore
from worker.adapters.task_ledger import TaskLedger
from worker.adapters.tombstones import Tombstones
from worker.config import Settings
from worker.services import replay as replaying
from worker.tasks.replay import enqueue_replay

HELP = (
    ("dlq", "the dead-letter store: dlq.list(), dlq.get(id), dlq.count(), dlq.trim()"),
    ("dead_letters(reason=None)", "dead-letter entries, newest first, optionally one reason"),
    ("replay(*ids, reason=None, since=None, all=False)",
     "re-enqueue entries through their own task; each leaves the store once queued"),
    ("purge(*ids, reason=None, since=None, all=False)", "delete entries without replaying"),
    ("sync(*customer_ids, wait=False)",
     "enqueue customers; wait=True waits and returns each step's outcome"),
    ("status(customer_id)", "the customer's link, dead letters and recent sync history"),
    ("link(customer_id)", "the Klaviyo profile id linked to the customer, or None"),
    ("queues()", "messages waiting per queue, held by workers (unacked), and retries waiting"),
    ("open_steps(limit=20)",
     "steps sent and not yet at an outcome: the count, and those past due for the sweep"),
    ("tombstones", "deleted or forgotten customers: .get(id), .deleted(ids), .remove(id)"),
    ("redis", "the Redis client behind the stores and queues"),
    ("help_()", "print this list again"),
)


def help_text() -> str:
    width = max(len(name) for name, _ in HELP)
    return "\n".join(f"  {name:<{width}}  {doc}" for name, doc in HELP)


def banner() -> str:
    return "ipaas-klaviyo admin shell. Helpers:\n" + help_text() + "\nCtrl-D leaves."


@dataclass
class Stores:
    redis: redis.Redis
    links: LinkStore
    dead_letters: DeadLetterStore
    history: HistoryStore

    @classmethod
    def of(cls, source: Any) -> Stores:
        """From a bootstrap Container (its stores) or Settings (stores on its Redis only:
        the shell needs no Klaviyo or iPaaS.com credentials)."""
        if not isinstance(source, Settings):
            return cls(source.redis, source.links, source.dead_letters, source.history)
        client = redis.Redis.from_url(source.redis_url, decode_responses=True)
        dead_letters = DeadLetterStore(
            client,
            retention_seconds=int(source.dead_letter_retention_days * 86400),
            max_entries=source.dead_letter_max_entries,
        )
        return cls(client, LinkStore(client), dead_letters, HistoryStore(client))


def queue_depths(client: redis.Redis) -> dict[str, int]:
    """Messages waiting per Celery queue, ``unacked`` (held by workers: running or
    prefetched) and ``retrying`` (steps waiting out a retry in the scheduled set)."""
    # Imported when used: celeryconfig reads the settings and Celery connects lazily.
    from celeryconfig import QUEUES
    from worker.adapters.broker import queue_depths as broker_depths
    from worker.adapters.scheduled import ScheduledSteps

    depths = broker_depths(client, QUEUES)
    depths["retrying"] = ScheduledSteps(client).retrying()
    return depths


def build_namespace(source: Any) -> dict[str, Any]:
    """The shell's globals, from a bootstrap Container or Settings."""
    stores = Stores.of(source)
    store = stores.dead_letters

    def dead_letters(reason: str | None = None) -> list[dict[str, Any]]:
        """Dead-letter entries, newest first, optionally only one reason code."""
        return store.list(reason=reason)

    def _selected(ids: tuple[str, ...], reason: str | None, since: str | None,
                  all: bool) -> list[dict[str, Any]]:
        entries, missing = replaying.select(
            store, ids=list(ids) or None, all=all, reason=reason, since=since
        )
        for entry_id in missing:
            print(f"no dead-letter entry {entry_id}")
        return entries

    def replay(*ids: str, reason: str | None = None, since: str | None = None,
               all: bool = False) -> replaying.ReplayReport:
        """Re-enqueue entries through their own task; each leaves the store once queued."""
        report = replaying.replay(store, _selected(ids, reason, since, all),
                                  enqueue=enqueue_replay)
        print("\n".join([*report.lines(), report.summary]))
        return report

    def purge(*ids: str, reason: str | None = None, since: str | None = None,
              all: bool = False) -> int:
        """Delete entries without replaying; returns how many were deleted."""
        return replaying.purge(store, _selected(ids, reason, since, all))

    def sync(*customer_ids: str, wait: bool = False) -> dict[str, Any]:
        """Enqueue customers: their task ids, or with wait=True each step's outcome."""
        # Imported when used: celeryconfig reads the settings and Celery connects lazily.
        from producers.manual_sync import enqueue_customer, wait_for_steps

        queued = {str(cid): enqueue_customer(str(cid)) for cid in customer_ids}
        if not wait:
            return {cid: result.id for cid, result in queued.items()}
        return {cid: wait_for_steps(result) for cid, result in queued.items()}

    def status(customer_id: str) -> dict[str, Any]:
        """The customer's link, dead-letter entries and recent sync history."""
        cid = str(customer_id)
        return {
            "customer_id": cid,
            "profile_id": stores.links.get(cid),
            "dead_letters": store.for_customer(cid),
            "history": stores.history.recent(cid),
        }

    def link(customer_id: str) -> str | None:
        """The Klaviyo profile id linked to the customer, or None."""
        return stores.links.get(str(customer_id))

    def queues() -> dict[str, int]:
        """Messages waiting in each Celery queue, plus those taken but not acknowledged."""
        return queue_depths(stores.redis)

    def open_steps(limit: int = 20) -> dict[str, Any]:
        """Steps sent and not yet at an outcome (the lost-task ledger): how many, and up to
        ``limit`` of those the lost-task sweep is due to look for."""
        ledger = TaskLedger(stores.redis)
        due = [{"task_id": task_id, "task": entry.task, "kwargs": entry.kwargs,
                "resent": entry.resent} for task_id, entry in ledger.due(limit)]
        return {"open": ledger.open_count(), "due": due}

    def help_() -> None:
        """Print the helpers again."""
        print(help_text())

    return {
        "dlq": store, "dead_letters": dead_letters, "replay": replay, "purge": purge,
        "sync": sync, "status": status, "link": link, "queues": queues,
        "open_steps": open_steps, "help_": help_,
        "tombstones": Tombstones(stores.redis), "redis": stores.redis,
    }


def run_shell(settings: Settings | None = None) -> int:
    settings = settings or bootstrap.settings()
    # Imported when used: celeryconfig reads the settings and Celery connects lazily.
    from worker.tasks.celery_app import app, use_redis

    if app.conf.broker_url != settings.redis_url:
        use_redis(settings.redis_url)  # enqueue where the stores live
    namespace = build_namespace(settings)
    if sys.stdin.isatty():  # line editing for a person; piped input needs none
        try:
            import readline
            import rlcompleter

            readline.set_completer(rlcompleter.Completer(namespace).complete)
            readline.parse_and_bind("tab: complete")
        except ImportError:
            pass
    code.interact(banner=banner(), local=namespace, exitmsg="")
    return 0
