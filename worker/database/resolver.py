"""Where the database URL comes from, resolved fresh each time it is asked for.

Sources, first configured wins:
1. the Heroku Platform API (HEROKU_API_KEY + HEROKU_APP_NAME): the app's config var
   DATABASE_CONFIG_VAR (default DATABASE_URL) — what an app outside Heroku needs;
2. a command (DATABASE_URL_COMMAND, e.g. `heroku config:get DATABASE_URL -a myapp`): its stdout;
3. a file (DATABASE_URL_FILE, a mounted secret), re-read each time;
4. the environment's DATABASE_URL (inside a dyno), else the embedded local cluster.

`Database` resolves at connect time and again only after an error that can mean the database
moved, never per query. The first two sources cost Platform API requests (~4,500 an hour per
account): every thread of the process shares one `budget.Budget` for them (one call at a time,
answers shared, a token bucket, a 429's Retry-After honoured). The URL is a secret: its
password is registered with `redact` the moment it is read, a malformed one is refused without
a fragment of it, and only `Resolved.describe()` (source, host, port, database) is printed.
"""

from __future__ import annotations

import email.utils
import ipaddress
import re
import shlex
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import requests
from psycopg2.extensions import parse_dsn

from config import Settings
from worker.database.budget import Budget, budget_for
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
    """Parse a URL or libpq keyword string; add sslmode=require for a non-local host.

    A malformed URL is a ResolverError that names the source and holds nothing of the URL (a
    mounted file may be mid-rewrite: retrying can help)."""
    at_in_userinfo = _userinfo_holds_at(url)
    params: dict[str, str] = {}
    if not at_in_userinfo:
        try:
            params = parse_dsn(url)
        except Exception:
            # The driver's message would echo the URL, password and all.
            raise _malformed(url, source, "it is not a valid PostgreSQL URL") from None
        # libpq splits at the first '@': the rest of such a password becomes the host.
        at_in_userinfo = "@" in params.get("host", "")
    if at_in_userinfo:
        raise _malformed(url, source, "its user or password holds '@': percent-encode it as %40")
    if not _well_formed(params):
        # e.g. a '/' in the password: libpq then reads part of it as the host or the port.
        raise _malformed(
            url,
            source,
            "it is not a valid PostgreSQL URL (bad host or port;"
            " percent-encode any '/' or '@' in the user or password)",
        )
    register_secret(params.get("password"))
    if "sslmode" not in params and not is_local(params.get("host", "")):
        # Heroku Postgres refuses plain connections from outside its network.
        params["sslmode"] = "require"
    return Resolved(source=source, params=params)


_URI = re.compile(r"^postgres(?:ql)?://", re.IGNORECASE)
_HOST = re.compile(r"^(?:/.*|[A-Za-z0-9._~%:-]*)$")  # a name, an address, or a socket directory
_PORT = re.compile(r"^[0-9]*$")


def _userinfo_holds_at(url: str) -> bool:
    """True for a URI whose user or password holds a raw '@'. libpq splits at the first '@',
    so the password's tail would become the host and be printed, connected to, logged."""
    match = _URI.match(url.strip())
    if not match:
        return False
    authority = re.split(r"[/?]", url.strip()[match.end() :], maxsplit=1)[0]
    return authority.count("@") > 1


def _well_formed(params: dict[str, str]) -> bool:
    hosts, ports = params.get("host", ""), params.get("port", "")
    return all(_HOST.match(h) for h in hosts.split(",")) and all(
        _PORT.match(p.strip()) for p in ports.split(",")
    )


def _malformed(url: str, source: str, why: str) -> ResolverError:
    """The error for a malformed URL, every fragment of its password registered as a secret
    first (the message itself holds none of it)."""
    url = url.strip()
    register_secret(url)
    match = _URI.match(url)
    if match:
        rest = url[match.end() :]
        password = rest[: rest.rfind("@")].partition(":")[2] if "@" in rest else ""
        for piece in {password, *re.split(r"[@/:?#]", password)}:
            register_secret(piece)
    return ResolverError(f"cannot resolve the database URL from {source}: {why}")


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
    if status == 429:
        wait = retry_after(response.headers.get("Retry-After"))
        error = ResolverError(f"it answered 429 (rate limited): no call to it for {wait:.0f} s")
        error.retry_after = wait  # type: ignore[attr-defined]  # read by the budget
        raise error
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


# Without a usable Retry-After: the API's limit refills ~75 requests a minute.
DEFAULT_RETRY_AFTER = 60.0


def retry_after(header: str | None, now: Callable[[], float] = time.time) -> float:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date."""
    value = (header or "").strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return DEFAULT_RETRY_AFTER
    if when.tzinfo is None:
        return DEFAULT_RETRY_AFTER
    return max(0.0, when.timestamp() - now())


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


# Sources that spend Platform API requests (the `heroku` CLI calls the API too).
COSTLY: frozenset[Source] = frozenset({heroku_api, command})


def resolve(settings: Settings, budget: Budget | None = None) -> Resolved:
    """Resolve the database URL now, from the first configured source.

    A costly source is asked through the process's budget for it (or `budget`): a thread may
    get an answer another thread just had, or, when the budget says not now, the last good one.
    """
    name, read = source_for(settings)

    def call() -> Resolved:
        try:
            url = read(settings)
        except ResolverError as exc:
            error = ResolverError(
                f"cannot resolve the database URL from {name}: {exc}", fatal=exc.fatal
            )
            error.retry_after = getattr(exc, "retry_after", None)  # type: ignore[attr-defined]
            raise error from None
        try:
            return parse(url, name)
        except ResolverError as exc:
            if read is environment:  # the process's own environment cannot change: say it now
                raise ResolverError(str(exc), fatal=True) from None
            raise

    if read not in COSTLY:
        return call()
    if budget is None:
        key = (
            name,
            settings.heroku_api_url,
            settings.heroku_api_key,
            settings.database_url_command,
        )
        budget = budget_for(key, name, settings.resolver_burst, settings.resolver_interval)
    return budget.resolve(call)
