"""The status page's Flask application: `create_app()` builds it, checks its settings, and puts
HTTP Basic auth, CSRF checks and safe headers in front of every view (`worker.web.views`).

Nothing is served without STATUS_PASSWORD, nor with one shorter than 12 characters: `create_app`
refuses to build the app, with one line. Any user name is accepted; the password is compared in
constant time. The session cookie (it holds the CSRF token and the flash messages) is signed with
a key derived from the password, so every gunicorn worker and every dyno agrees on it, and
rotating the password ends sessions. A request that came over HTTPS (Heroku's router says so in
X-Forwarded-Proto) gets a `Secure` cookie and HSTS; one over plain HTTP (locally) gets neither.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from flask import Flask, Response, abort, request, session
from flask.sessions import SecureCookieSessionInterface
from werkzeug.middleware.proxy_fix import ProxyFix

from config import ConfigError, Settings
from worker.database import Database
from worker.redact import register_secret
from worker.registry import Job, discover
from worker.web.views import views, when_filters

T = TypeVar("T")
REALM = "Nightshift status"
# HTTP Basic has no lockout, and the page can queue runs: a guessable password is no password.
# `openssl rand -base64 24` (the README's) gives 32 characters.
MIN_PASSWORD_LENGTH = 12
# A year, HSTS's usual figure; no includeSubDomains: mounted in someone's app, the page must
# not decide for their other hosts.
HSTS = "max-age=31536000"
# A page should answer soon or say why, not ride out a long outage (as the CLI's reads).
PAGE_BUDGET_SECONDS = 15.0
_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self';"
    " base-uri 'none'; frame-ancestors 'none'"
)


class Store:
    """The page's database session: one per process, opened on first use (after gunicorn has
    forked), used by one request at a time. `Database.run` resolves, reconnects and replays."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._db: Database | None = None
        self._lock = threading.Lock()

    def run(self, work: Callable[[Any], T]) -> T:
        with self._lock:
            if self._db is None:
                # writable=False: a page that only reads works on a follower too.
                self._db = Database(self.settings, "nightshift:web", writable=False)
            budget = min(PAGE_BUDGET_SECONDS, self.settings.db_retry_timeout)
            return self._db.run(work, budget=budget)


class _Sessions(SecureCookieSessionInterface):
    """The session cookie belongs where the page is mounted (`/status/`), not to the host app."""

    def get_cookie_path(self, app: Flask) -> str:
        return f"{request.script_root}/"

    def get_cookie_secure(self, app: Flask) -> bool:
        # Per request, not SESSION_COOKIE_SECURE: over plain HTTP (the page run locally) a
        # browser need not send a Secure cookie back, and the forms would fail their CSRF check.
        return request.is_secure


def create_app(settings: Settings | None = None, jobs: Mapping[str, Job] | None = None) -> Flask:
    """The status page as a WSGI app, ready to serve or to mount under a prefix of another.

    Settings and jobs default to the environment's (as the worker reads them). Raises
    ConfigError, naming the variable, when STATUS_PASSWORD is not set or is shorter than
    MIN_PASSWORD_LENGTH: checked here, the one gate both `python -m worker web` and a mounted
    page pass, and not in `Settings.from_env`, so a worker dyno (which shares the app's config
    vars but serves no page) is never stopped by it.
    """
    settings = settings or Settings.from_env()
    password = settings.status_password
    if not password:
        raise ConfigError(
            "STATUS_PASSWORD is not set: the status page serves nothing without a password"
            " (set one with `heroku config:set`, or in the environment)"
        )
    if len(password) < MIN_PASSWORD_LENGTH:  # the message never holds the password, nor its length
        raise ConfigError(
            f"STATUS_PASSWORD is too short: the status page needs at least {MIN_PASSWORD_LENGTH}"
            " characters (make one with `openssl rand -base64 24`)"
        )
    register_secret(password)
    if jobs is None:
        jobs = discover(settings.jobs_package)

    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=hmac.new(
            password.encode(), b"nightshift status sessions", hashlib.sha256
        ).digest(),
        SESSION_COOKIE_NAME="nightshift_status",  # never the host app's own, when mounted
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_HTTPONLY=True,
    )
    app.extensions["nightshift"] = {
        "settings": settings,
        "jobs": dict(jobs),
        "store": Store(settings),
    }
    app.session_interface = _Sessions()
    app.register_blueprint(views)
    app.jinja_env.filters.update(when_filters())
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.before_request(_require_password(password))
    app.before_request(_check_csrf)
    app.after_request(_safe_headers)
    # Heroku ends HTTPS at its router and forwards plain HTTP to the dyno, saying how the request
    # came in X-Forwarded-Proto; its router always sets it, and it is the one proxy in front of
    # us (x_proto=1: the last value, the one the nearest proxy wrote). gunicorn does not trust it
    # from the router (only from loopback), so this does, and wrapping the app's own wsgi_app
    # keeps it working when mounted under a prefix of another app (DispatcherMiddleware).
    # Without a proxy (locally) a client may send the header itself: that changes only its own
    # responses (a Secure cookie its browser will not send back over HTTP, an HSTS header that
    # browsers ignore over HTTP), never another client's.
    # X-Forwarded-For, -Host, -Port and -Prefix stay untrusted: nothing here uses them.
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=0, x_proto=1)  # type: ignore[method-assign]
    return app


def _require_password(password: str) -> Callable[[], Response | None]:
    expected = password.encode()

    def check() -> Response | None:
        auth = request.authorization
        given = auth.password if auth is not None and auth.type == "basic" else None
        if given is not None and hmac.compare_digest(given.encode(), expected):
            return None
        return Response(
            "401 Unauthorized: the status page needs its password (HTTP Basic).\n",
            401,
            {"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'},
            mimetype="text/plain",
        )

    return check


def csrf_token() -> str:
    """This session's token for forms that change something (created on first use)."""
    token = session.get("csrf")
    if not isinstance(token, str):
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def _check_csrf() -> None:
    if request.method not in ("POST", "PUT", "PATCH", "DELETE"):
        return
    expected = session.get("csrf")
    given = request.form.get("csrf_token", "")
    if not isinstance(expected, str) or not hmac.compare_digest(given.encode(), expected.encode()):
        abort(403, "this form was not sent from the status page (no valid CSRF token): reload it")


def _safe_headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = _CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    if request.is_secure:  # HSTS over plain HTTP means nothing (RFC 6797): browsers ignore it
        response.headers["Strict-Transport-Security"] = HSTS
    return response
