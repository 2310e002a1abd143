"""``ipaas-klaviyo admin``: the console under gunicorn, on 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import logging
import sys
from typing import Any

from gunicorn.app.base import BaseApplication

from producers.console.auth import require_password
from producers.serve import MaskingLogger
from worker import bootstrap
from worker.config import Settings
from worker.logging_setup import install_masking

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8090


class ConsoleApplication(BaseApplication):
    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self._settings = settings
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            if key in self.cfg.settings:
                self.cfg.set(key, value)

    def load(self) -> Any:
        # Imported in each gunicorn worker, after the fork: the app opens its own Redis.
        from producers.console import create_app

        return create_app(self._settings)


def gunicorn_options(host: str, port: int) -> dict[str, Any]:
    return {
        "bind": f"{host}:{port}",
        # One process, a few threads: a handful of operators, and the Redis connection
        # pool and the signing key are shared in it.
        "workers": 1,
        "worker_class": "gthread",
        "threads": 4,
        # A replay or purge click handles up to 2,000 entries; leave it time.
        "timeout": 120,
        "accesslog": None,  # the console logs its actions itself, with ids only
        "errorlog": "-",
        "loglevel": "info",
        "logger_class": MaskingLogger,
        "proc_name": "ipaas-klaviyo-admin",
        "control_socket_disable": True,
    }


def serve_console(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> int:
    """Run until stopped. Refuses to start (ConfigurationError) without a password."""
    settings = bootstrap.settings()
    require_password(settings)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    install_masking()
    # Imported here: the Celery app reads celeryconfig (the settings) when imported.
    from worker.tasks.celery_app import app, use_redis

    if app.conf.broker_url != settings.redis_url:
        use_redis(settings.redis_url)  # replay and sync enqueue where the stores live
    ConsoleApplication(settings, gunicorn_options(host, port)).run()
    return 0
