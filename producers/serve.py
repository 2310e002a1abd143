"""``ipaas-klaviyo serve``: the webhook receiver under gunicorn, configured in code.

gthread workers: they keep connections alive (iPaaS.com and load balancers reuse them), and
bench/receiver.py measured them ahead of sync workers on loopback. The app is loaded in each
worker after the fork (no preload), so every worker opens its own Redis connections.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import Any

from gunicorn import glogging
from gunicorn.app.base import BaseApplication

from producers.receiver import ReceiverSettings, WebhookReceiver
from producers.request_body import CLOSE_CONNECTION
from worker import bootstrap
from worker.config import Settings
from worker.core.errors import ConfigurationError
from worker.logging_setup import install_masking
from worker.observability import init_sentry

DEFAULT_HOST = "0.0.0.0"
DEFAULT_PORT = 8080
MAX_DEFAULT_WORKERS = 12
WORKER_CLASS = "gthread"
THREADS_PER_WORKER = 4
KEEPALIVE_SECONDS = 15
# A webhook never takes long; a worker stuck this long is restarted by gunicorn.
WORKER_TIMEOUT_SECONDS = 30


def default_workers(cores: int | None = None) -> int:
    """``2 * cores + 1``, capped: past a dozen processes only memory grows."""
    count = cores if cores is not None else (os.cpu_count() or 1)
    return min(2 * count + 1, MAX_DEFAULT_WORKERS)


def workers_from_env(env: Mapping[str, str] | None = None) -> int:
    settings = bootstrap.settings() if env is None else Settings.from_env(env)
    return settings.receiver_workers or default_workers()


class ReceiverApplication(BaseApplication):
    def __init__(self, settings: ReceiverSettings, options: dict[str, Any]) -> None:
        self.settings = settings
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for name, value in self.options.items():
            # Options newer than the installed gunicorn (>= 21) are skipped, not fatal.
            if name in self.cfg.settings:
                self.cfg.set(name, value)

    def load(self) -> Any:
        # Runs in each worker after the fork: Sentry starts per process.
        app: Any = WebhookReceiver(self.settings)
        if init_sentry(bootstrap.settings(), "receiver"):
            # Only with Sentry on (SENTRY_DSN): sentry-sdk's WSGI wrapper.
            from sentry_sdk.integrations.wsgi import SentryWsgiMiddleware

            app = SentryWsgiMiddleware(app)
        return ConnectionControl(app)


class ConnectionControl:
    """Gives the app a way to close the connection after its answer.

    gunicorn drops a ``Connection`` header set by the app and decides keep-alive itself;
    its response object's ``force_close`` makes it answer ``Connection: close`` and close
    the connection cleanly. start_response is that object's bound method. Outermost, so it
    sees gunicorn's own start_response rather than a middleware's wrapper.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        force_close = getattr(getattr(start_response, "__self__", None), "force_close", None)
        if callable(force_close):
            environ[CLOSE_CONNECTION] = force_close
        return self.app(environ, start_response)


class MaskingLogger(glogging.Logger):
    """gunicorn's logger with personal data masked, like every other log line of ours."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        install_masking(self.error_log)
        install_masking(self.access_log)


def gunicorn_options(host: str, port: int, workers: int) -> dict[str, Any]:
    return {
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_class": WORKER_CLASS,
        "threads": THREADS_PER_WORKER,
        "keepalive": KEEPALIVE_SECONDS,
        "timeout": WORKER_TIMEOUT_SECONDS,
        "preload_app": False,
        "accesslog": None,  # the receiver logs one line per request itself, without PII
        "errorlog": "-",
        "loglevel": "info",
        "logger_class": MaskingLogger,
        "proc_name": "ipaas-klaviyo-receiver",
        # gunicorn 24+'s admin socket lives at one path per user: several receivers on one
        # host (tests, the bench, the demo) would fight over it, and nothing here uses it.
        "control_socket_disable": True,
    }


def serve(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, workers: int | None = None) -> int:
    """Run until gunicorn is stopped. Refuses to start without WEBHOOK_API_KEY."""
    settings = ReceiverSettings.from_env()
    settings.require_key()
    count = workers if workers is not None else workers_from_env()
    if count < 1:
        raise ConfigurationError("--workers must be at least 1")
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    install_masking()
    ReceiverApplication(settings, gunicorn_options(host, port, count)).run()
    return 0
