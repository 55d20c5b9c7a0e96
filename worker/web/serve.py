"""`python -m worker web`: the status page under gunicorn, started in-process on $PORT.

gunicorn, not a hand-written server: it forks and supervises workers (WEB_CONCURRENCY of them,
as on Heroku), and on SIGTERM stops taking requests and lets those in flight finish. Its own
lines go through our logging (one JSON object per line, redacted); Heroku's router already logs
every request, so there is no access log.
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger

from config import Settings

# Heroku gives a dyno 30 s between SIGTERM and SIGKILL; requests in flight get most of it.
GRACEFUL_TIMEOUT = 20
THREADS = 4


class _Logs(Logger):
    """gunicorn's lines through the root logger that `worker.logs` configured."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            log.handlers.clear()
            log.propagate = True


class _Server(BaseApplication):
    def __init__(self, app: Flask, options: dict[str, Any]) -> None:
        self.app = app
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for name, value in self.options.items():
            self.cfg.set(name, value)

    def load(self) -> Flask:
        return self.app


def serve(settings: Settings, app: Flask, host: str) -> None:
    """Serve `app` until SIGTERM or SIGINT (gunicorn exits the process when it stops)."""
    options = {
        "bind": f"{host}:{settings.port}",
        "graceful_timeout": GRACEFUL_TIMEOUT,
        "logger_class": _Logs,
        # Threads, not sync workers: a browser holds idle keep-alive (and preconnected) sockets
        # open, which would each block a sync worker; requests take the one session in turn.
        "worker_class": "gthread",
        "threads": THREADS,
        "accesslog": None,
        # forwarded_allow_ips stays gunicorn's (loopback): Heroku's router is not on loopback,
        # so X-Forwarded-Proto is honoured by the app itself (ProxyFix in worker/web/app.py),
        # which also covers the page mounted in another app's server.
        "proc_name": "nightshift-web",
        # gunicorn's runtime control socket (under $HOME) serves no one here: no socket file.
        "control_socket_disable": True,
        # WEB_CONCURRENCY (Heroku sets it by dyno size) is gunicorn's own default for workers.
    }
    _Server(app, options).run()
