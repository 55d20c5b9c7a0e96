"""Where the database URL comes from, resolved fresh each time it is asked for.

Sources, first configured wins: the environment's DATABASE_URL, else the embedded local
cluster. The URL is a secret: its password is registered with `redact` the moment it is read,
and only `Resolved.describe()` (source, host, database) is ever printed.
"""

from __future__ import annotations

import ipaddress
import threading
from dataclasses import dataclass, field

from psycopg2.extensions import parse_dsn

from config import ConfigError, Settings
from worker.embedded import default_cluster
from worker.logs import get_logger
from worker.redact import register_secret

log = get_logger(__name__)
_said_embedded = threading.Event()  # say once per process that the embedded cluster is in use


@dataclass(frozen=True)
class Resolved:
    """A resolved database URL and where it came from."""

    source: str
    params: dict[str, str] = field(repr=False)

    @property
    def host(self) -> str:
        return self.params.get("host", "localhost")

    @property
    def database(self) -> str:
        return self.params.get("dbname", "")

    def describe(self) -> str:
        port = self.params.get("port", "5432")
        return f"{self.source} (host={self.host} port={port} db={self.database})"


def parse(url: str, source: str) -> Resolved:
    """Parse a URL or libpq keyword string; add sslmode=require for a non-local host."""
    try:
        params = parse_dsn(url)
    except Exception:
        # The driver's message would echo the URL, password and all.
        raise ConfigError(f"the database URL from {source} is not a valid PostgreSQL URL") from None
    register_secret(params.get("password"))
    if "sslmode" not in params and not is_local(params.get("host", "")):
        # Heroku Postgres refuses plain connections from outside its network.
        params["sslmode"] = "require"
    return Resolved(source=source, params=params)


def is_local(host: str) -> bool:
    if not host or host.startswith("/") or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve(settings: Settings) -> Resolved:
    """Resolve the database URL now, from the first configured source."""
    if settings.database_url:
        return parse(settings.database_url, "environment DATABASE_URL")
    cluster = default_cluster(settings.data_dir)
    started = cluster.ensure_started()
    if started or not _said_embedded.is_set():
        _said_embedded.set()
        log.info(
            "embedded_database_started" if started else "embedded_database_used",
            reason="DATABASE_URL is not set",
            home=str(cluster.home),
            port=cluster.port,
        )
    return parse(cluster.url(), "embedded")
