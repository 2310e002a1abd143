"""Sentry error reporting, when ``SENTRY_DSN`` is set; a no-op otherwise.

Every event passes ``before_send``, which masks email addresses, phone numbers and API keys
anywhere in it (``worker.core.scrub``). Local variables are not sent at all: names and
addresses cannot be recognised by pattern, and a frame's locals can hold a whole customer.
Errors are tagged with the customer id, step and tracking guid of the sync they happened in.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from worker import __version__
from worker.config import Settings
from worker.core.scrub import scrub

logger = logging.getLogger("ipaas_klaviyo.observability")

_initialised = False


def before_send(event: dict[str, Any], hint: dict[str, Any] | None = None) -> dict[str, Any]:
    """The event with every string inside it scrubbed (a Sentry ``before_send`` hook)."""
    scrubbed: dict[str, Any] = scrub(event)
    return scrubbed


def before_breadcrumb(crumb: dict[str, Any], hint: dict[str, Any] | None = None
                      ) -> dict[str, Any]:
    scrubbed: dict[str, Any] = scrub(crumb)
    return scrubbed


def sentry_options(settings: Settings) -> dict[str, Any]:
    """Everything ``sentry_sdk.init`` gets except integrations and transport (testable)."""
    return {
        "dsn": settings.sentry_dsn.value,
        "release": f"ipaas-klaviyo@{__version__}",
        "include_local_variables": False,
        "max_request_body_size": "never",
        "before_send": before_send,
        "before_breadcrumb": before_breadcrumb,
        # Errors only: tracing would send a span per Klaviyo call for no operational gain.
        "traces_sample_rate": 0.0,
        "default_integrations": True,
    }


def init_sentry(settings: Settings, component: str, **overrides: Any) -> bool:
    """Start Sentry for ``component`` ("worker", "receiver", ...) if ``SENTRY_DSN`` is set.
    Returns whether Sentry is on. ``overrides`` go to ``sentry_sdk.init`` (tests pass a
    transport)."""
    global _initialised
    if not settings.sentry_dsn.value:
        return False
    # Only with Sentry on (SENTRY_DSN): sentry-sdk is not loaded otherwise.
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.logging import LoggingIntegration

    options = sentry_options(settings)
    options.update(overrides)
    sentry_sdk.init(
        integrations=[
            CeleryIntegration(),
            LoggingIntegration(level=logging.INFO, event_level=logging.ERROR),
        ],
        **options,
    )
    sentry_sdk.set_tag("component", component)
    _initialised = True
    logger.info("Sentry error reporting on for %s", component)
    return True


def sentry_enabled() -> bool:
    return _initialised


@contextmanager
def step_scope(customer_id: str, tracking_guid: str | None, step: str) -> Iterator[None]:
    """Tags errors reported inside the block with the sync they belong to. Without Sentry,
    nothing happens (not even the import)."""
    if not _initialised:
        yield
        return
    # Only with Sentry on (SENTRY_DSN): sentry-sdk is not loaded otherwise.
    import sentry_sdk

    with sentry_sdk.new_scope() as scope:
        scope.set_tag("customer_id", customer_id)
        scope.set_tag("step", step)
        if tracking_guid:
            scope.set_tag("tracking_guid", tracking_guid)
        yield
