"""The operator console (`ipaas-klaviyo admin`): a small server-rendered Flask application.

Everything it shows or does goes through the CLI's stores and services
(producers/console/services.py); templates and CSS ship in this package, so it works offline.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, render_template
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from producers.console import auth
from producers.console.services import ConsoleServices
from worker import bootstrap
from worker.adapters.admin_auth import SESSION_SECONDS
from worker.config import Settings


def create_app(settings: Settings | None = None,
               services: ConsoleServices | None = None) -> Flask:
    """The console; refuses (ConfigurationError) without ADMIN_PASSWORD(_HASH)."""
    settings = settings or bootstrap.settings()
    auth.require_password(settings)
    services = services or ConsoleServices.from_settings(settings)
    services.pages.ensure_indexed()
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=services.sessions.signing_key(),
        SESSION_COOKIE_NAME="ipk_admin",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_SECURE=settings.admin_secure_cookies,
        PERMANENT_SESSION_LIFETIME=SESSION_SECONDS,
        MAX_CONTENT_LENGTH=1024 * 1024,
    )
    if settings.admin_behind_proxy:
        # One proxy in front: its X-Forwarded-For names the client (lock-out per client).
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1)  # type: ignore[method-assign]
    app.extensions["console"] = services
    auth.install(app)
    # Imported here: the view modules use this package's helpers, so they load after it.
    from producers.console import customer_views, dead_letter_views, views

    app.register_blueprint(views.bp)
    app.register_blueprint(dead_letter_views.bp)
    app.register_blueprint(customer_views.bp)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        return render_template("error.html", code=exc.code, name=exc.name,
                               message=exc.description), exc.code or 500

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Any:
        # Logged with its kind only: a message may carry data from Redis or an API.
        app.logger.error("console error: %s", type(exc).__name__)
        return render_template("error.html", code=500, name="Internal error",
                               message=f"{type(exc).__name__}: see the console's log"), 500

    return app
