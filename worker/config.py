"""Settings, read once per process from the environment (README, "Configuration").

Secrets are wrapped so that printing settings, a traceback's locals or a repr never shows
them: they print as ``<SECRET>``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

from worker.core.errors import ConfigurationError
from worker.core.rate_limits import parse_limits


class Secret(str):
    """A string that never shows its value when printed or repr'd."""

    def __repr__(self) -> str:
        return "<SECRET>" if self else "''"

    def __str__(self) -> str:
        return "<SECRET>" if self else ""

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    @property
    def value(self) -> str:
        return str.__str__(self)


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigurationError(f"{name} must be true or false")


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number") from None


def _whole(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit():
        raise ConfigurationError(f"{name} must be a whole number")
    return int(raw)


def _positive(env: Mapping[str, str], name: str) -> int:
    value = _whole(env, name, 0)
    if value < 1:
        raise ConfigurationError(f"{name} must be a positive whole number")
    return value


def mask_url_password(url: str) -> str:
    """``redis://:pw@host`` → ``redis://:<SECRET>@host``: URLs may carry credentials."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:<SECRET>@{host}"


_NO_SECRET = Secret("")

# A task gets this long after its soft time limit before its process is killed.
HARD_LIMIT_GRACE_SECONDS = 10.0
# The visibility timeout outlasts the hard limit by this much: a message is delivered a little
# before its task starts, and kombu's restore runs on a timer.
VISIBILITY_MARGIN = 10.0


@dataclass(frozen=True)
class Settings:
    redis_url: str = "redis://localhost:6379/0"
    klaviyo_api_key: Secret = _NO_SECRET
    klaviyo_base_url: str = "https://a.klaviyo.com"
    klaviyo_revision: str = "2026-07-15"
    ipaas_api_token: Secret = _NO_SECRET
    ipaas_base_url: str = "https://api.ipaas.com"
    ipaas_system_id: str = ""
    ipaas_client_id: str | None = None
    webhook_api_key: Secret = _NO_SECRET
    mapping_file: str | None = None  # None: the bundled seed mapping
    generate_events: bool = True
    sentry_dsn: Secret = _NO_SECRET
    # Beyond the core variables: knobs a production user needs, each with a safe default.
    default_phone_region: str = "US"
    create_missing_lists: bool = False
    http_timeout: float = 15.0
    sync_max_attempts: int = 8
    sync_max_retry_seconds: float = 6 * 3600.0
    retry_base_seconds: float = 2.0
    retry_cap_seconds: float = 600.0
    dead_letter_retention_days: float = 30.0
    dead_letter_max_entries: int = 100_000
    # Redis hands a message back to the queue when it was not acknowledged within this time:
    # how long the tasks a dead worker held (running or prefetched) wait to run again. No
    # retry waits in a worker (they wait in Redis), so it only has to outlast one task.
    broker_visibility_timeout: float = 90.0
    # A task running longer is stopped (soft limit: it fails and retries like any error);
    # HARD_LIMIT_GRACE_SECONDS later its process is killed. Long work is cut into slices.
    task_time_limit_seconds: float = 60.0
    # A step sent this long ago (or last retried) without an outcome is looked for in the
    # broker and sent again if the broker lost it (worker/tasks/lost_tasks.py).
    lost_task_after_seconds: float = 90.0
    # Klaviyo limits per tier, e.g. "L=75/750,M=10/150" (burst per second / steady per
    # minute) for accounts whose tiers differ from the published ones; empty: published.
    klaviyo_rate_limits: str = ""
    rate_limit_max_wait_seconds: float = 30.0
    # Transactions → order events (README, "Transactions").
    ipaas_transaction_path: str = "transactions/v2/Transaction/{id}"
    ipaas_transactions_path: str = "transactions/v2/Transactions"
    reject_duplicate_skus: bool = True
    event_currency: str = "USD"
    placed_order_metric: str = "Placed Order"
    ordered_product_metric: str = "Ordered Product"
    transaction_status_events: bool = False
    # Subscription and list actions of many customers wait this long (or until a batch is
    # full) and go to Klaviyo as one call; 0 sends each customer's actions at once.
    subscription_batch_window: float = 2.0
    # Queued customer syncs above which the fleet writes profiles in bulk import jobs
    # (README, "Burst mode"); back to single writes below half of it; 0 turns it off.
    burst_threshold: int = 500
    # Reconciliation (README, "Reconciliation"): the beat interval, the first pass's
    # look-back, and the list filter on the update time (its syntax is not documented).
    reconcile_interval_seconds: float = 900.0
    reconcile_lookback_seconds: float = 86400.0
    reconcile_filter_action: str = "greaterthan"
    reconcile_filter_field: str = "UpdateDateTime"
    reconcile_full_scan: bool = False
    reconcile_page_size: int = 100
    # The receiver and the metrics endpoint (README, "The webhook receiver", "Metrics").
    webhook_max_body_bytes: int = 1024 * 1024
    metrics_token: Secret = _NO_SECRET  # GET /metrics wants it as a bearer token when set
    receiver_workers: int | None = None  # None: 2 x cores + 1, at most 12
    # Every key the service writes in Redis starts with this (worker/adapters/keys.py), so
    # two deployments can share one Redis.
    redis_key_prefix: str = "ipk:"
    # Consent back to iPaaS.com (README, "Consent back to iPaaS.com"): the beat interval of
    # consent-sync; and erasure (README, "Deletions"): whether forgetting a customer also asks
    # Klaviyo to delete the linked profile.
    consent_sync_interval_seconds: float = 900.0
    klaviyo_delete_profiles: bool = False
    # The operator console (`ipaas-klaviyo admin`, README "Operator console"): it refuses to
    # start without a password or a werkzeug password hash.
    admin_password: Secret = _NO_SECRET
    admin_password_hash: Secret = _NO_SECRET
    admin_secure_cookies: bool = False  # True behind TLS: the browser sends the cookie only there
    admin_read_only: bool = False  # True hides and refuses replay, purge and sync now
    admin_behind_proxy: bool = False  # True: trust one proxy's X-Forwarded-For/-Proto

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        e = os.environ if env is None else env
        d = cls()
        return cls(
            redis_url=e.get("REDIS_URL", d.redis_url),
            klaviyo_api_key=Secret(e.get("KLAVIYO_API_KEY", "")),
            klaviyo_base_url=e.get("KLAVIYO_BASE_URL", d.klaviyo_base_url).rstrip("/"),
            klaviyo_revision=e.get("KLAVIYO_REVISION", d.klaviyo_revision),
            ipaas_api_token=Secret(e.get("IPAAS_API_TOKEN", "")),
            ipaas_base_url=e.get("IPAAS_BASE_URL", d.ipaas_base_url).rstrip("/"),
            ipaas_system_id=e.get("IPAAS_SYSTEM_ID", ""),
            ipaas_client_id=e.get("IPAAS_CLIENT_ID") or None,
            webhook_api_key=Secret(e.get("WEBHOOK_API_KEY", "")),
            mapping_file=e.get("MAPPING_FILE") or None,
            generate_events=_flag(e, "GENERATE_EVENTS", True),
            sentry_dsn=Secret(e.get("SENTRY_DSN", "")),
            default_phone_region=e.get("DEFAULT_PHONE_REGION", d.default_phone_region).upper(),
            create_missing_lists=_flag(e, "KLAVIYO_CREATE_MISSING_LISTS", False),
            http_timeout=_number(e, "HTTP_TIMEOUT", d.http_timeout),
            sync_max_attempts=int(_number(e, "SYNC_MAX_ATTEMPTS", d.sync_max_attempts)),
            sync_max_retry_seconds=_number(e, "SYNC_MAX_RETRY_SECONDS", d.sync_max_retry_seconds),
            retry_base_seconds=_number(e, "RETRY_BASE_SECONDS", d.retry_base_seconds),
            retry_cap_seconds=_number(e, "RETRY_CAP_SECONDS", d.retry_cap_seconds),
            dead_letter_retention_days=_number(
                e, "DEAD_LETTER_RETENTION_DAYS", d.dead_letter_retention_days
            ),
            dead_letter_max_entries=int(
                _number(e, "DEAD_LETTER_MAX_ENTRIES", d.dead_letter_max_entries)
            ),
            broker_visibility_timeout=_number(
                e, "BROKER_VISIBILITY_TIMEOUT", d.broker_visibility_timeout
            ),
            task_time_limit_seconds=_number(
                e, "TASK_TIME_LIMIT_SECONDS", d.task_time_limit_seconds
            ),
            lost_task_after_seconds=_number(
                e, "LOST_TASK_AFTER_SECONDS", d.lost_task_after_seconds
            ),
            klaviyo_rate_limits=e.get("KLAVIYO_RATE_LIMITS", ""),
            rate_limit_max_wait_seconds=_number(
                e, "RATE_LIMIT_MAX_WAIT_SECONDS", d.rate_limit_max_wait_seconds
            ),
            ipaas_transaction_path=e.get("IPAAS_TRANSACTION_PATH")
            or d.ipaas_transaction_path,
            ipaas_transactions_path=e.get("IPAAS_TRANSACTIONS_PATH")
            or d.ipaas_transactions_path,
            reject_duplicate_skus=_flag(e, "REJECT_DUPLICATE_SKUS", True),
            event_currency=(e.get("EVENT_CURRENCY") or d.event_currency).upper(),
            placed_order_metric=e.get("PLACED_ORDER_METRIC") or d.placed_order_metric,
            ordered_product_metric=e.get("ORDERED_PRODUCT_METRIC") or d.ordered_product_metric,
            transaction_status_events=_flag(e, "TRANSACTION_STATUS_EVENTS", False),
            subscription_batch_window=_number(
                e, "SUBSCRIPTION_BATCH_WINDOW_SECONDS", d.subscription_batch_window
            ),
            burst_threshold=int(_number(e, "BURST_THRESHOLD", d.burst_threshold)),
            reconcile_interval_seconds=_number(
                e, "RECONCILE_INTERVAL_SECONDS", d.reconcile_interval_seconds
            ),
            reconcile_lookback_seconds=_number(
                e, "RECONCILE_LOOKBACK_SECONDS", d.reconcile_lookback_seconds
            ),
            reconcile_filter_action=e.get("RECONCILE_FILTER_ACTION")
            or d.reconcile_filter_action,
            reconcile_filter_field=e.get("RECONCILE_FILTER_FIELD") or d.reconcile_filter_field,
            reconcile_full_scan=_flag(e, "RECONCILE_FULL_SCAN", False),
            reconcile_page_size=int(
                _number(e, "RECONCILE_PAGE_SIZE", d.reconcile_page_size)
            ),
            webhook_max_body_bytes=_whole(e, "WEBHOOK_MAX_BODY_BYTES", d.webhook_max_body_bytes),
            metrics_token=Secret(e.get("METRICS_TOKEN", "").strip()),
            receiver_workers=(_positive(e, "RECEIVER_WORKERS")
                              if e.get("RECEIVER_WORKERS", "").strip() else None),
            redis_key_prefix=e.get("REDIS_KEY_PREFIX", d.redis_key_prefix),
            consent_sync_interval_seconds=_number(
                e, "CONSENT_SYNC_INTERVAL_SECONDS", d.consent_sync_interval_seconds
            ),
            klaviyo_delete_profiles=_flag(e, "KLAVIYO_DELETE_PROFILES", False),
            admin_password=Secret(e.get("ADMIN_PASSWORD", "")),
            admin_password_hash=Secret(e.get("ADMIN_PASSWORD_HASH", "")),
            admin_secure_cookies=_flag(e, "ADMIN_SECURE_COOKIES", False),
            admin_read_only=_flag(e, "ADMIN_READ_ONLY", False),
            admin_behind_proxy=_flag(e, "ADMIN_BEHIND_PROXY", False),
        ).checked()

    def checked(self) -> Settings:
        """Reject combinations that would break a guarantee, with the reason."""
        if self.task_time_limit_seconds < 10:
            raise ConfigurationError("TASK_TIME_LIMIT_SECONDS must be at least 10")
        if self.broker_visibility_timeout < self.task_hard_time_limit_seconds + VISIBILITY_MARGIN:
            raise ConfigurationError(
                "BROKER_VISIBILITY_TIMEOUT must be at least TASK_TIME_LIMIT_SECONDS + "
                f"{HARD_LIMIT_GRACE_SECONDS + VISIBILITY_MARGIN:g}: a task still running when "
                "it passes would be handed to a second worker"
            )
        if self.rate_limit_max_wait_seconds + 2 * self.http_timeout > self.task_time_limit_seconds:
            raise ConfigurationError(
                "RATE_LIMIT_MAX_WAIT_SECONDS + 2 x HTTP_TIMEOUT must not exceed "
                "TASK_TIME_LIMIT_SECONDS: a step must have time for a limiter wait and its calls"
            )
        parse_limits(self.klaviyo_rate_limits)  # fails here, at start, on a bad value
        if self.lost_task_after_seconds < 1:
            raise ConfigurationError("LOST_TASK_AFTER_SECONDS must be at least 1")
        if self.sync_max_attempts < 1:
            raise ConfigurationError("SYNC_MAX_ATTEMPTS must be at least 1")
        if "{id}" not in self.ipaas_transaction_path:
            raise ConfigurationError("IPAAS_TRANSACTION_PATH must contain {id}")
        if self.burst_threshold < 0:
            raise ConfigurationError("BURST_THRESHOLD must be 0 (off) or more")
        if not 0 <= self.subscription_batch_window <= 60:
            raise ConfigurationError(
                "SUBSCRIPTION_BATCH_WINDOW_SECONDS must be between 0 (off) and 60"
            )
        if self.reconcile_interval_seconds <= 0 or self.reconcile_lookback_seconds <= 0:
            raise ConfigurationError(
                "RECONCILE_INTERVAL_SECONDS and RECONCILE_LOOKBACK_SECONDS must be positive"
            )
        if self.consent_sync_interval_seconds <= 0:
            raise ConfigurationError("CONSENT_SYNC_INTERVAL_SECONDS must be positive")
        if self.reconcile_page_size < 1:
            raise ConfigurationError("RECONCILE_PAGE_SIZE must be at least 1")
        if self.webhook_max_body_bytes <= 0:
            raise ConfigurationError("WEBHOOK_MAX_BODY_BYTES must be positive")
        if not self.redis_key_prefix or any(c.isspace() for c in self.redis_key_prefix):
            raise ConfigurationError("REDIS_KEY_PREFIX must be a non-empty word, like ipk:")
        return self

    @property
    def task_hard_time_limit_seconds(self) -> float:
        """When a task's process is killed: the soft limit plus a grace to clean up."""
        return self.task_time_limit_seconds + HARD_LIMIT_GRACE_SECONDS

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v}" for k, v in self.describe().items())
        return f"Settings({shown})"

    def describe(self) -> dict[str, str]:
        """Every setting as text, secrets masked: safe to print or log."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = str(value) if not isinstance(value, Secret) else repr(value)
        out["redis_url"] = mask_url_password(self.redis_url)
        return out

    def require(self, *names: str) -> None:
        """Fail with one clear message naming every missing required setting."""
        missing = [n.upper() for n in names if not getattr(self, n)]
        if missing:
            raise ConfigurationError("missing settings: " + ", ".join(missing))
