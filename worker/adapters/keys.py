"""Every Redis key the service writes: one registry, one prefix.

The prefix is REDIS_KEY_PREFIX (default ``ipk:``); ``worker/bootstrap.py`` sets it when it
reads the settings, and every store builds its keys with ``key(NAME)``, so two deployments
with different prefixes can share one Redis. Celery's own keys (queues, ``unacked``, task
results) go under ``{prefix}celery:`` (kombu's and Celery's ``global_keyprefix``), except
under the default prefix, where they keep the plain names earlier versions used, so an upgrade finds
its queued messages.

docs/architecture.md lists the same keys with their owners.
"""

from __future__ import annotations

DEFAULT_PREFIX = "ipk:"

# Key families, each a name under the prefix (``{id}``: one key per record).
LINKS = "links"                        # hash: customer id → Klaviyo profile id (``~``: unconfirmed)
LINKS_BY_PROFILE = "links:by-profile"  # hash: Klaviyo profile id → customer id (consent-sync)
TOMBSTONES = "tombstones"              # hash: customer id → tombstone (erased: never synced again)
FINGERPRINTS = "fingerprints"          # hash: customer id → fingerprint of the last payload sent
HISTORY = "history"                    # list per customer (``history:{id}``): recent step outcomes
DEAD_LETTERS = "dlq"                   # ``dlq:entry:{id}``, ``dlq:customer:{id}``, ``dlq:by_time``…
PENDING = "pending"                    # ``pending:{kind}:{id}``: a sync is queued (coalescing)
LEDGER = "ledger"                      # hash task id → entry; ``ledger:due``; ``ledger:sweeping``
SCHEDULED = "scheduled"                # zset task id → due; ``scheduled:entries``; ``…:subjects``
SUBSCRIPTIONS = "subs"                 # subscription buffer: ``subs:buf:{key}``, ``subs:step:{id}``
LISTS = "lists"                        # hash: list name → id and opt-in process (cache)
METRICS = "metrics"                    # hash per counter (``metrics:{name}``), ``metrics:names``
RATE_LIMIT = "ratelimit"               # ``ratelimit:{account:tier}:burst|steady|penalty``
LOCKS = "lock"                         # ``lock:{name}``: fleet-wide single runner (reconcile)
CHECKPOINTS = "checkpoint"             # ``checkpoint:{name}``: a resumable pass's progress
WATERMARKS = "reconcile:watermark"     # ``reconcile:watermark:{kind}``
SENT_ORDERS = "orders:sent"            # set: order events already sent
BURST = "burst"                        # burst mode: ``burst:mode``, ``burst:waiting``, batches…
ADMIN = "admin"                        # the console: ``admin:session:{id}``, failed logins…

_configured = DEFAULT_PREFIX


def configure(prefix: str) -> None:
    """Use ``prefix`` for every key this process builds from now on."""
    global _configured
    _configured = prefix


def current() -> str:
    return _configured


def key(name: str, prefix: str | None = None) -> str:
    """The full key of ``name`` under ``prefix`` (default: the configured one)."""
    return (_configured if prefix is None else prefix) + name


def celery_prefix(prefix: str | None = None) -> str:
    """The prefix of Celery's own keys: none under the default prefix (the names earlier
    versions used), else ``{prefix}celery:``, apart from the stores' keys (a queue named
    ``lists`` must not meet the list cache)."""
    chosen = _configured if prefix is None else prefix
    return "" if chosen == DEFAULT_PREFIX else f"{chosen}celery:"
