"""Where the database URL comes from, resolved fresh each time it is asked for.

Sources, first configured wins:
1. the Heroku Platform API (HEROKU_API_KEY + HEROKU_APP_NAME): the app's config var
   DATABASE_CONFIG_VAR (default DATABASE_URL) — what an app outside Heroku needs;
2. a command (DATABASE_URL_COMMAND, e.g. `heroku config:get DATABASE_URL -a myapp`): its stdout;
3. a file (DATABASE_URL_FILE, a mounted secret), re-read each time;
4. the environment's DATABASE_URL (inside a dyno), else the embedded local cluster.

`Database` resolves at connect time and again only after an error that can mean the database
moved, never per query (the Platform API allows ~4,500 requests an hour). The URL is a secret:
its password is registered with `redact` the moment it is read, and only `Resolved.describe()`
(source, host, port, database) is ever printed.
"""

from __future__ import annotations

import ipaddress
import shlex
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import requests
from psycopg2.extensions import parse_dsn

from config import ConfigError, Settings
from worker.database.embedded import default_cluster
from worker.database.errors import ResolverError
from worker.logs import get_logger
from worker.redact import redact, register_secret

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


# -- sources ----------------------------------------------------------------------------------
def heroku_api(settings: Settings) -> str:
    """GET /apps/{app}/config-vars from the Heroku Platform API."""
    app, var = settings.heroku_app_name, settings.database_config_var
    url = f"{settings.heroku_api_url}/apps/{app}/config-vars"
    try:
        response = requests.get(
            url,
            headers={
                "Accept": "application/vnd.heroku+json; version=3",
                "Authorization": f"Bearer {settings.heroku_api_key}",
                "User-Agent": "nightshift",
            },
            timeout=settings.resolver_timeout,
        )
    except requests.RequestException as exc:
        raise ResolverError(f"cannot reach it ({type(exc).__name__})") from None
    status = response.status_code
    if status in (401, 403):
        raise ResolverError(
            f"it answered {status}: the token was refused; check HEROKU_API_KEY", fatal=True
        )
    if status == 404:
        raise ResolverError(f"it answered 404: no app named {app!r}", fatal=True)
    if status != 200:
        raise ResolverError(f"it answered {status}")
    try:
        config = response.json()
    except ValueError:
        raise ResolverError("it answered something that is not JSON") from None
    value = config.get(var) if isinstance(config, dict) else None
    if not value:
        raise ResolverError(f"app {app!r} has no config var {var}", fatal=True)
    return value


def command(settings: Settings) -> str:
    """Run DATABASE_URL_COMMAND; its stdout is the URL."""
    argv = shlex.split(settings.database_url_command or "")
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=settings.resolver_timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except FileNotFoundError:
        raise ResolverError(f"{argv[0]!r} was not found", fatal=True) from None
    except subprocess.TimeoutExpired:
        raise ResolverError(f"it ran longer than {settings.resolver_timeout:g} s") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ResolverError(f"it exited {done.returncode}: {redact(last)[:200]}")
    url = done.stdout.strip()
    if not url:
        raise ResolverError("it printed nothing")
    return url


def file(settings: Settings) -> str:
    """Read DATABASE_URL_FILE afresh."""
    try:
        url = settings.database_url_file.read_text().strip()  # type: ignore[union-attr]
    except FileNotFoundError:
        raise ResolverError("the file does not exist") from None
    except OSError as exc:
        raise ResolverError(f"the file cannot be read ({exc.strerror})") from None
    if not url:
        raise ResolverError("the file is empty")
    return url


def environment(settings: Settings) -> str:
    return settings.database_url or ""


def embedded(settings: Settings) -> str:
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
    return cluster.url()


Source = Callable[[Settings], str]


def source_for(settings: Settings) -> tuple[str, Source]:
    """The first configured source: its name (for logs) and how to read it."""
    if settings.heroku_api_key and settings.heroku_app_name:
        register_secret(settings.heroku_api_key)
        app, var = settings.heroku_app_name, settings.database_config_var
        return f"Heroku Platform API ({app} {var})", heroku_api
    if settings.database_url_command:
        return "DATABASE_URL_COMMAND", command
    if settings.database_url_file:
        return f"DATABASE_URL_FILE ({settings.database_url_file})", file
    if settings.database_url:
        return "environment DATABASE_URL", environment
    return "embedded", embedded


def resolve(settings: Settings) -> Resolved:
    """Resolve the database URL now, from the first configured source."""
    name, read = source_for(settings)
    try:
        url = read(settings)
    except ResolverError as exc:
        raise ResolverError(
            f"cannot resolve the database URL from {name}: {exc}", fatal=exc.fatal
        ) from None
    return parse(url, name)
