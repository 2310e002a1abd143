"""Celery configuration (the design card's ``celeryconfig.py``).

Read by ``worker.celery_app`` with ``config_from_object``. Values come from the same
environment variables as the rest of the service; nothing connects at import time.
"""

from worker.config import Settings

_settings = Settings.from_env()

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

# Redis redelivers an unacknowledged message after the visibility timeout. Every retry
# countdown (RETRY_CAP_SECONDS, default 600 s) must stay well below it, or a message waiting
# for its ETA would be handed to a second worker.
VISIBILITY_TIMEOUT_SECONDS = 3600
broker_transport_options = {"visibility_timeout": VISIBILITY_TIMEOUT_SECONDS}
result_backend_transport_options = {"visibility_timeout": VISIBILITY_TIMEOUT_SECONDS}
broker_connection_retry_on_startup = True

task_default_queue = "profiles"
task_routes = {
    "ipaas_klaviyo.sync_customer": {"queue": "profiles"},
    "ipaas_klaviyo.apply_address": {"queue": "addresses"},
    "ipaas_klaviyo.apply_subscriptions": {"queue": "lists"},
    "ipaas_klaviyo.write_back_links": {"queue": "profiles"},
}
QUEUES = ("profiles", "addresses", "lists")

worker_send_task_events = True
task_send_sent_event = True
