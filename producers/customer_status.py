"""What `status` shows of one customer or transaction, for the CLI and the operator console."""

from __future__ import annotations

from typing import Any

from worker.adapters.dead_letters import TRANSACTION_STEP, DeadLetterStore
from worker.adapters.history import HistoryStore
from worker.adapters.links import LinkStore
from worker.adapters.scheduled import ScheduledSteps
from worker.adapters.tombstones import Tombstones
from worker.tasks.transactions import history_subject

CUSTOMER_STEPS = ("profile", "address", "lists")


def customer_status(cid: str, links: LinkStore, dead_letters: DeadLetterStore,
                    history: HistoryStore, scheduled: ScheduledSteps,
                    tombstones: Tombstones) -> dict[str, Any]:
    """The customer's Klaviyo link, tombstone, dead letters, waiting retries and recent
    history."""
    waiting = [scheduled.waiting(step, cid) for step in CUSTOMER_STEPS]
    tombstone = tombstones.get(cid)
    return {
        "customer_id": cid,
        "profile_id": links.get(cid),
        "tombstone": tombstone.as_dict() if tombstone else None,
        "dead_letters": dead_letters.for_customer(cid),
        "retrying": [w.as_dict() for w in waiting if w is not None],
        "history": history.recent(cid),
    }


def transaction_status(transaction_id: str, dead_letters: DeadLetterStore,
                       history: HistoryStore, scheduled: ScheduledSteps) -> dict[str, Any]:
    """A transaction's dead letter, waiting retry and recent history (no Klaviyo calls)."""
    entry = dead_letters.get(f"{TRANSACTION_STEP}:{transaction_id}")
    waiting = scheduled.waiting(TRANSACTION_STEP, transaction_id)
    return {
        "transaction_id": transaction_id,
        "dead_letters": [entry] if entry else [],
        "retrying": [waiting.as_dict()] if waiting else [],
        "history": history.recent(history_subject(transaction_id)),
    }
