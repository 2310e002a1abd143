"""Celery configuration (docs/architecture.md, "Tasks and queues").

Read by ``worker.tasks.celery_app`` with ``config_from_object``. Values come from the same
environment variables as the rest of the service; nothing connects at import time.
"""

from worker import bootstrap
from worker.adapters import keys

_settings = bootstrap.settings()

broker_url = _settings.redis_url
result_backend = _settings.redis_url
result_expires = 24 * 3600

# Only ids travel through Redis, as JSON: never pickle, never personal data.
task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]

# At-least-once: a task is acknowledged only after it finished, and a worker killed
# mid-task (SIGKILL, OOM) hands it back to the queue. Tasks are idempotent for this.
task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1

# Redis hands an unacknowledged message back to its queue after the visibility timeout
# (BROKER_VISIBILITY_TIMEOUT, default 90 s): that is how the tasks a dead worker held (running
# or prefetched) come back. No task waits in a worker for a countdown (retries and delays wait
# in Redis: worker/adapters/scheduled.py), and no task runs longer than its time limit, which
# Settings keeps below the timeout, so a live worker's message is never handed out twice.
VISIBILITY_TIMEOUT_SECONDS = _settings.broker_visibility_timeout
# Celery's own keys (queues, unacked, results) take REDIS_KEY_PREFIX too, unless it is the
# default (worker/adapters/keys.py): two deployments can then share one Redis.
_KEY_PREFIX = {"global_keyprefix": keys.celery_prefix()} if keys.celery_prefix() else {}
broker_transport_options = {
    **_KEY_PREFIX,
    "visibility_timeout": VISIBILITY_TIMEOUT_SECONDS,
    # Look for messages past their visibility timeout every tenth of it (at most a minute),
    # on every look: kombu's default (10 s x every 10th sweep) would leave a killed worker's
    # tasks waiting ~100 s longer than the timeout.
    "unacked_restore_interval": max(1.0, min(60.0, VISIBILITY_TIMEOUT_SECONDS / 10)),
    "unacked_restore_throttle": 1,
}
# A task past TASK_TIME_LIMIT_SECONDS gets SoftTimeLimitExceeded, which its step turns into a
# retry; one that ignores it is killed after a grace (the task ledger sends it again).
task_soft_time_limit = _settings.task_time_limit_seconds
task_time_limit = _settings.task_hard_time_limit_seconds
result_backend_transport_options = {**_KEY_PREFIX,
                                    "visibility_timeout": VISIBILITY_TIMEOUT_SECONDS}
broker_connection_retry_on_startup = True

task_default_queue = "profiles"
task_routes = {
    "ipaas_klaviyo.sync_customer": {"queue": "profiles"},
    "ipaas_klaviyo.apply_address": {"queue": "addresses"},
    "ipaas_klaviyo.apply_subscriptions": {"queue": "lists"},
    "ipaas_klaviyo.flush_subscriptions": {"queue": "lists"},
    "ipaas_klaviyo.write_back_links": {"queue": "profiles"},
    "ipaas_klaviyo.sync_transaction": {"queue": "transactions"},
    # Its own queue: a reconcile tick must not wait behind thousands of queued syncs.
    "ipaas_klaviyo.reconcile": {"queue": "reconcile"},
    "ipaas_klaviyo.consent_sync": {"queue": "reconcile"},
    "ipaas_klaviyo.forget_customer": {"queue": "profiles"},
    # Burst batches' steps: never behind the backlog of queued syncs they are draining.
    "ipaas_klaviyo.flush_burst": {"queue": "burst"},
    "ipaas_klaviyo.burst_step": {"queue": "burst"},
}
QUEUES = ("profiles", "addresses", "lists", "transactions")
# Every worker also consumes this; it holds at most a reconcile tick, so it is not among the
# sync queues whose depth the admin shell reports.
RECONCILE_QUEUE = "reconcile"
# Every worker consumes this too: the steps of burst-mode batches (worker/tasks/burst.py).
BURST_QUEUE = "burst"

# `ipaas-klaviyo beat` sends a reconcile every RECONCILE_INTERVAL_SECONDS (default 15 min).
# A tick still queued when the next is due has expired: it would only find the same work.
# Overlapping runs are harmless: the reconcile lock lets one pass per kind run at a time.
beat_schedule = {
    "reconcile": {
        "task": "ipaas_klaviyo.reconcile",
        "schedule": _settings.reconcile_interval_seconds,
        "options": {"expires": _settings.reconcile_interval_seconds},
    },
    # Klaviyo-side opt-outs back to iPaaS.com, every CONSENT_SYNC_INTERVAL_SECONDS (default
    # 15 min); its own lock lets one pass run at a time.
    "consent-sync": {
        "task": "ipaas_klaviyo.consent_sync",
        "schedule": _settings.consent_sync_interval_seconds,
        "options": {"expires": _settings.consent_sync_interval_seconds},
    },
}

worker_send_task_events = True
task_send_sent_event = True
