"""The composition root: the one place that builds real adapters from Settings.

Built lazily, once per process (a forked Celery child builds its own, so connection pools
are never shared across processes). Nothing here runs at import time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import redis
import requests

from worker import __version__
from worker.adapters import keys
from worker.adapters.dead_letters import DeadLetterStore
from worker.adapters.history import HistoryStore
from worker.adapters.http import HttpAdapter
from worker.adapters.ipaas import IpaasClient
from worker.adapters.klaviyo.bulk import KlaviyoBulkImports
from worker.adapters.klaviyo.client import KlaviyoClient
from worker.adapters.klaviyo.events import KlaviyoEvents
from worker.adapters.links import LinkStore
from worker.adapters.list_directory import CachedListDirectory
from worker.adapters.metrics import CountingLimiter, Metrics
from worker.adapters.rate_limited_http import RateLimitedHttp
from worker.adapters.rate_limiter import RedisRateLimiter, account_id
from worker.adapters.stores import FingerprintStore, SentOrderStore
from worker.config import Settings
from worker.core.errors import ConfigurationError
from worker.core.events import EventSettings
from worker.core.mapping import MappingCollections, load_mapping
from worker.core.rate_limits import effective_limits, parse_limits
from worker.core.retry import RetryPolicy
from worker.services.sync_service import Ports
from worker.services.transaction_service import TransactionPorts, TransactionSettings

REQUIRED_FOR_SYNC = ("klaviyo_api_key", "ipaas_api_token", "ipaas_system_id")


@dataclass
class Container:
    settings: Settings
    redis: redis.Redis
    mapping: MappingCollections
    ipaas: IpaasClient
    klaviyo: KlaviyoClient
    links: LinkStore
    dead_letters: DeadLetterStore
    history: HistoryStore
    lists: CachedListDirectory
    retry_policy: RetryPolicy
    limiter: RedisRateLimiter
    metrics: Metrics

    @property
    def bulk(self) -> KlaviyoBulkImports:
        return KlaviyoBulkImports(self.klaviyo)

    @property
    def events(self) -> KlaviyoEvents:
        return KlaviyoEvents(self.klaviyo)

    @property
    def sent_orders(self) -> SentOrderStore:
        return SentOrderStore(self.redis)

    @property
    def transaction_ports(self) -> TransactionPorts:
        return TransactionPorts(transactions=self.ipaas, events=self.events,
                                sent=self.sent_orders, customers=self.ports)

    @property
    def transaction_settings(self) -> TransactionSettings:
        s = self.settings
        return TransactionSettings(
            events=EventSettings(currency=s.event_currency,
                                 placed_order_metric=s.placed_order_metric,
                                 ordered_product_metric=s.ordered_product_metric),
            reject_duplicate_skus=s.reject_duplicate_skus,
            status_events=s.transaction_status_events,
            default_region=s.default_phone_region,
        )

    @property
    def ports(self) -> Ports:
        return Ports(
            customers=self.ipaas,
            external_ids=self.ipaas,
            links=self.links,
            profiles=self.klaviyo,
            lists=self.lists,
            subscriptions=self.klaviyo,
            fingerprints=FingerprintStore(self.redis),
        )


def load_mapping_file(path: str | None) -> MappingCollections:
    """The user's MAPPING_FILE, or the bundled seed mapping when unset."""
    if path is None:
        return load_mapping(None)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"MAPPING_FILE {path}: cannot read ({exc.strerror})") from None
    return load_mapping(text, source_name=Path(path).name)


def redis_client(settings: Settings) -> redis.Redis:
    return redis.Redis.from_url(settings.redis_url, decode_responses=True)


def http_session() -> requests.Session:
    session = requests.Session()
    session.headers["User-Agent"] = f"ipaas-klaviyo/{__version__}"
    return session


def build(settings: Settings) -> Container:
    settings.require(*REQUIRED_FOR_SYNC)
    mapping = load_mapping_file(settings.mapping_file)
    client = redis_client(settings)
    metrics = Metrics(client)
    http = HttpAdapter(http_session(), timeout=settings.http_timeout,
                       on_response=metrics.http_counter("ipaas_calls_total"))
    # Every Klaviyo call takes a slot from the fleet-wide limiter first; iPaaS.com calls don't.
    limiter = RedisRateLimiter(
        client,
        account_id(settings.klaviyo_api_key.value),
        effective_limits(parse_limits(settings.klaviyo_rate_limits)),
        max_wait_seconds=settings.rate_limit_max_wait_seconds,
    )
    ipaas = IpaasClient(
        http,
        settings.ipaas_base_url,
        settings.ipaas_api_token.value,
        settings.ipaas_system_id,
        client_id=settings.ipaas_client_id,
        transaction_path=settings.ipaas_transaction_path,
        transactions_path=settings.ipaas_transactions_path,
    )
    klaviyo = KlaviyoClient(
        RateLimitedHttp(
            HttpAdapter(
                http_session(), timeout=settings.http_timeout,
                on_response=metrics.http_counter("klaviyo_calls_total", throttled_source="klaviyo"),
            ),
            CountingLimiter(limiter, metrics),
        ),
        base_url=settings.klaviyo_base_url,
        api_key=settings.klaviyo_api_key.value,
        revision=settings.klaviyo_revision,
    )
    return Container(
        settings=settings,
        redis=client,
        mapping=mapping,
        ipaas=ipaas,
        klaviyo=klaviyo,
        links=LinkStore(client),
        dead_letters=DeadLetterStore(
            client,
            retention_seconds=int(settings.dead_letter_retention_days * 86400),
            max_entries=settings.dead_letter_max_entries,
        ),
        history=HistoryStore(client),
        lists=CachedListDirectory(
            client, klaviyo, create_missing=settings.create_missing_lists
        ),
        retry_policy=RetryPolicy(
            max_attempts=settings.sync_max_attempts,
            base_seconds=settings.retry_base_seconds,
            cap_seconds=settings.retry_cap_seconds,
            max_total_seconds=settings.sync_max_retry_seconds,
        ),
        limiter=limiter,
        metrics=metrics,
    )


_settings: Settings | None = None
_container: Container | None = None
_built_in_pid: int | None = None
_broker_side: tuple[int, Settings, redis.Redis] | None = None


def settings() -> Settings:
    """This process's settings: read from the environment once, then passed down from here
    (and read again only after ``reset()``)."""
    global _settings
    if _settings is None:
        _settings = Settings.from_env()
        keys.configure(_settings.redis_key_prefix)
    return _settings


def container() -> Container:
    """This process's container, built on first use (and again after a fork)."""
    global _container, _built_in_pid
    if _container is None or _built_in_pid != os.getpid():
        _container = build(settings())
        _built_in_pid = os.getpid()
    return _container


def settings_and_redis() -> tuple[Settings, redis.Redis]:
    """Settings and a Redis client, for code that only enqueues (the CLI's producers): the
    container's when this process built one, else a client of their own, without the
    credentials and mapping file a sync needs."""
    global _broker_side
    if _container is not None and _built_in_pid == os.getpid():
        return _container.settings, _container.redis
    if _broker_side is None or _broker_side[0] != os.getpid():
        current = settings()
        _broker_side = (os.getpid(), current, redis_client(current))
    return _broker_side[1], _broker_side[2]


def reset() -> None:
    """Forget what was built: the next use reads the environment again (tests, the demo)."""
    global _container, _broker_side, _settings
    _container = None
    _broker_side = None
    _settings = None


def check_configuration(given: Settings | None = None) -> Settings:
    """Validate settings and the mapping file without connecting to anything."""
    checked = given or settings()
    checked.require(*REQUIRED_FOR_SYNC)
    load_mapping_file(checked.mapping_file)
    return checked
