"""Sign-in, the session guard, CSRF tokens, read-only mode and the action log.

The cookie (HttpOnly, SameSite=Strict, Secure with ADMIN_SECURE_COOKIES) carries only a
session id; the session lives in Redis (worker/adapters/admin_auth.py) and ends at sign-out.
Every POST must carry the session's CSRF token (before sign-in: the login form's token).
"""

from __future__ import annotations

import hmac
import logging
import secrets
from typing import Any

from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask import session as cookie
from werkzeug.security import check_password_hash
from werkzeug.wrappers import Response

from producers.console.services import ConsoleServices
from worker.config import Settings
from worker.core.errors import ConfigurationError

logger = logging.getLogger("ipaas_klaviyo.console")
bp = Blueprint("auth", __name__)
OPEN_ENDPOINTS = {"auth.login", "static"}


def services() -> ConsoleServices:
    found: ConsoleServices = current_app.extensions["console"]
    return found


def require_password(settings: Settings) -> None:
    if not settings.admin_password.value and not settings.admin_password_hash.value:
        raise ConfigurationError(
            "the console needs ADMIN_PASSWORD or ADMIN_PASSWORD_HASH; it will not start "
            "without one")


def password_matches(settings: Settings, given: str) -> bool:
    if settings.admin_password_hash.value:
        try:
            return check_password_hash(settings.admin_password_hash.value, given)
        except ValueError:  # a malformed hash setting: nobody gets in
            return False
    return hmac.compare_digest(given.encode(), settings.admin_password.value.encode())


def audit(action: str, **touched: Any) -> None:
    """One log line per action: the operator's session tag and the ids it touched."""
    details = " ".join(f"{name}={value}" for name, value in touched.items())
    logger.info("console action=%s session=%s %s", action, g.admin.tag, details)


def read_only() -> bool:
    return bool(services().settings.admin_read_only)


def refuse_if_read_only() -> None:
    if read_only():
        abort(403, "the console is read-only (ADMIN_READ_ONLY)")


def guard() -> Response | None:
    """Before every request: signed in (else to the login page), and a POST's CSRF token."""
    g.admin = None
    sid = cookie.get("sid")
    if isinstance(sid, str):
        g.admin = services().sessions.get(sid)
    if request.endpoint not in OPEN_ENDPOINTS and g.admin is None:
        return redirect(url_for("auth.login", next=request.full_path
                                if request.method == "GET" else None))
    if request.method == "POST":
        expected = g.admin.csrf_token if g.admin else cookie.get("login_csrf")
        given = request.form.get("csrf_token", "")
        if not isinstance(expected, str) or not hmac.compare_digest(given.encode(),
                                                                   expected.encode()):
            abort(400, "the form's CSRF token is missing or wrong: reload the page")
    return None


def csrf_token() -> str:
    if g.get("admin") is not None:
        return str(g.admin.csrf_token)
    if "login_csrf" not in cookie:
        cookie["login_csrf"] = secrets.token_urlsafe(32)
    return str(cookie["login_csrf"])


def _safe_next(target: str | None) -> str:
    # Only a path on this site: never an open redirect.
    if target and target.startswith("/") and not target.startswith("//"):
        return target
    return url_for("pages.overview")


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    s = services()
    who = request.remote_addr or "unknown"
    if request.method == "GET":
        return render_template("login.html", next=request.args.get("next", ""))
    locked = s.lockout.locked_for(who)
    if locked:
        logger.warning("console login refused: address locked out for %ds", locked)
        return render_template("login.html", error=f"Too many failed sign-ins: try again in "
                               f"{(locked + 59) // 60} minutes.", next=""), 429
    if not password_matches(s.settings, request.form.get("password", "")):
        failures = s.lockout.failed(who)
        logger.warning("console login failed (%d in a row from this address)", failures)
        return render_template("login.html", error="Wrong password.",
                               next=request.form.get("next", "")), 401
    s.lockout.succeeded(who)
    admin = s.sessions.start()
    cookie.clear()
    cookie["sid"] = admin.session_id
    g.admin = admin
    audit("login")
    return redirect(_safe_next(request.form.get("next")))


@bp.route("/logout", methods=["POST"])
def logout() -> Any:
    audit("logout")
    services().sessions.end(g.admin.session_id)
    cookie.clear()
    return redirect(url_for("auth.login"))


def install(app: Flask) -> None:
    app.before_request(guard)
    app.jinja_env.globals.update(csrf_token=csrf_token, read_only=read_only)
    app.register_blueprint(bp)
