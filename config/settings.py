"""Settings: one frozen object built from the environment at start (twelve-factor).

Every tunable is named here with its default and a one-line reason. `.env.example`
lists them all. Invalid values fail fast with a message naming the variable.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(Exception):
    """The environment holds an invalid setting."""


@dataclass(frozen=True)
class Settings:
    # Where the database URL comes from, first configured wins (see worker/resolver.py):
    # the Heroku Platform API, a command, a file, DATABASE_URL, else the embedded cluster.
    heroku_api_key: str | None = field(default=None, repr=False)
    heroku_app_name: str | None = None
    heroku_api_url: str = "https://api.heroku.com"
    database_config_var: str = "DATABASE_URL"
    database_url_command: str | None = field(default=None, repr=False)
    database_url_file: Path | None = None
    database_url: str | None = field(default=None, repr=False)
    # How long one resolution (API request, command) may take.
    resolver_timeout: float = 10.0
    # The Platform API (~4,500 requests/h per account) and the command (which calls it) are
    # asked, process-wide, at most resolver_burst times at once — a fresh fault re-resolves at
    # each of its first backoff steps — then once per resolver_interval s: a long outage costs
    # 300 requests/h at most (see worker/database/budget.py).
    resolver_burst: int = 5
    resolver_interval: float = 12.0
    # The embedded cluster's home (git-ignored). Used only without DATABASE_URL.
    data_dir: Path = PROJECT_ROOT / ".data"
    # The package whose modules declare the jobs (tests point it at jobs of their own).
    jobs_package: str = "jobs"
    # The project's migration files (NNNN_name.sql), applied once each, in order, by `migrate`:
    # how a job table's column type or key changes. Relative to the project root.
    migrations_dir: Path = PROJECT_ROOT / "migrations"

    # A batch is one statement and one round trip: it ends at this many rows or at about this
    # many bytes of values, whichever comes first, so narrow and wide rows alike make few round
    # trips. bench/throughput.py: 1,000-row batches lose a third of the speed behind a 20 ms
    # round trip; 10,000 rows (about 2 MB of typical rows) hide it, and a replay stays cheap.
    # A run's batches start at 1,000 rows and double up to this (worker/run/batch.py).
    batch_size: int = 10_000
    batch_max_bytes: int = 4 * 1024 * 1024

    # HTTP: every request a job makes is bounded. Connect fails fast; a read may be slow.
    http_connect_timeout: float = 10.0
    http_read_timeout: float = 60.0
    # Retries for idempotent GETs on connection errors, 429, 502, 503, 504.
    http_retries: int = 3
    # The whole of one response, connect to last byte, retry waits included: the read timeout
    # applies per read, so a source trickling a byte a minute would otherwise hold a run forever.
    http_deadline: float = 300.0
    # A streamed body holds no memory (flat 36 MB RSS at 1M events, bench/stream.py), so this
    # only stops a runaway source or a gzip bomb: 1 GiB is ~1.4M GeoJSON events, ~15 s to parse.
    http_max_bytes: int = 1 << 30
    # A body read whole (get_json, a page, get) costs ~6x its size in RSS (bench/stream.py:
    # 71 MB held 410 MB): 32 MiB (~190 MB) leaves a 512 MB standard-1X dyno room; stream more.
    http_max_buffered_bytes: int = 32 << 20

    # A new connection that cannot be made in this many seconds is an error.
    db_connect_timeout: int = 5
    # Server-side cap on one statement, so a stuck batch never holds a run forever.
    db_statement_timeout_ms: int = 300_000
    # TCP keepalives find a dead idle connection in idle + interval * count seconds (~11 s).
    db_keepalives_idle: int = 5
    db_keepalives_interval: int = 2
    db_keepalives_count: int = 3
    # Unacknowledged data for this long means the peer is gone (kernel-level blackholes).
    db_tcp_user_timeout_ms: int = 10_000
    # Client-side deadline: after this long without a byte from the server, a second connection
    # checks that our session is still working; if it is not, or cannot connect within
    # db_connect_timeout, the session is presumed dead. Catches middleboxes that swallow bytes.
    db_silence_timeout: float = 10.0

    # Replay after a transient database error: exponential backoff with jitter, each wait at
    # most db_retry_max_delay, all of them within db_retry_timeout (rides out a Heroku failover
    # or a maintenance window of a few minutes).
    db_retry_initial_delay: float = 0.1
    db_retry_max_delay: float = 2.0
    db_retry_timeout: float = 600.0

    # SIGTERM: Heroku kills 30 s after it; we finish the batch and exit well before.
    shutdown_grace_seconds: float = 20.0

    # A failed run (or one that refused rows) POSTs a short JSON message here (Slack-compatible
    # `text`); so does the first success after failed runs (recovered).
    alert_webhook_url: str | None = field(default=None, repr=False)
    # A webhook that is down, slow or busy (connection error, timeout, 5xx, 429) is tried again:
    # at most alert_attempts times, all within alert_deadline s, so a run's end (and a shutdown)
    # never waits on it longer; waits double from alert_retry_delay, each at most alert_max_delay
    # (a Retry-After included). 4 attempts of 5 s at most plus 1 + 2 + 4 s of waits fit in 30 s.
    alert_attempts: int = 4
    alert_deadline: float = 30.0
    alert_retry_delay: float = 1.0
    alert_max_delay: float = 10.0

    log_format: str = "auto"  # auto | json | console
    log_level: str = "INFO"

    # Heroku sets DYNO (web.1, worker.1, run.1234); recorded with each run.
    dyno: str = field(default_factory=lambda: os.uname().nodename)

    # The status page (`python -m worker web`): its HTTP Basic password. Unset or shorter than 12
    # characters, the page refuses to start (worker/web/app.py checks, not this: a worker dyno
    # shares the config vars but serves no page); any user name is accepted. Heroku sets PORT
    # for a web dyno; 8000 locally.
    status_password: str | None = field(default=None, repr=False)
    port: int = 8000

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        reader = _Reader(env)
        database_url_file = reader.text("DATABASE_URL_FILE")
        settings = cls(
            heroku_api_key=reader.text("HEROKU_API_KEY"),
            heroku_app_name=reader.text("HEROKU_APP_NAME"),
            heroku_api_url=(reader.text("HEROKU_API_URL") or cls.heroku_api_url).rstrip("/"),
            database_config_var=reader.text("DATABASE_CONFIG_VAR") or cls.database_config_var,
            database_url_command=reader.text("DATABASE_URL_COMMAND"),
            database_url_file=Path(database_url_file) if database_url_file else None,
            database_url=reader.text("DATABASE_URL"),
            resolver_timeout=reader.number("RESOLVER_TIMEOUT", cls.resolver_timeout),
            resolver_burst=reader.integer("RESOLVER_BURST", cls.resolver_burst),
            resolver_interval=reader.number("RESOLVER_INTERVAL", cls.resolver_interval),
            data_dir=Path(reader.text("NIGHTSHIFT_DATA_DIR") or PROJECT_ROOT / ".data"),
            jobs_package=reader.text("JOBS_PACKAGE") or cls.jobs_package,
            migrations_dir=PROJECT_ROOT / (reader.text("MIGRATIONS_DIR") or "migrations"),
            batch_size=reader.integer("BATCH_SIZE", cls.batch_size, minimum=1),
            batch_max_bytes=reader.integer("BATCH_MAX_BYTES", cls.batch_max_bytes, minimum=1024),
            http_connect_timeout=reader.number("HTTP_CONNECT_TIMEOUT", cls.http_connect_timeout),
            http_read_timeout=reader.number("HTTP_READ_TIMEOUT", cls.http_read_timeout),
            http_retries=reader.integer("HTTP_RETRIES", cls.http_retries, minimum=0),
            http_deadline=reader.number("HTTP_DEADLINE", cls.http_deadline),
            http_max_bytes=reader.integer("HTTP_MAX_BYTES", cls.http_max_bytes),
            http_max_buffered_bytes=reader.integer(
                "HTTP_MAX_BUFFERED_BYTES", cls.http_max_buffered_bytes
            ),
            db_connect_timeout=reader.integer("DB_CONNECT_TIMEOUT", cls.db_connect_timeout),
            db_statement_timeout_ms=reader.integer(
                "DB_STATEMENT_TIMEOUT_MS", cls.db_statement_timeout_ms, minimum=0
            ),
            db_keepalives_idle=reader.integer("DB_KEEPALIVES_IDLE", cls.db_keepalives_idle),
            db_keepalives_interval=reader.integer(
                "DB_KEEPALIVES_INTERVAL", cls.db_keepalives_interval
            ),
            db_keepalives_count=reader.integer("DB_KEEPALIVES_COUNT", cls.db_keepalives_count),
            db_tcp_user_timeout_ms=reader.integer(
                "DB_TCP_USER_TIMEOUT_MS", cls.db_tcp_user_timeout_ms, minimum=0
            ),
            db_silence_timeout=reader.number("DB_SILENCE_TIMEOUT", cls.db_silence_timeout),
            db_retry_initial_delay=reader.number(
                "DB_RETRY_INITIAL_DELAY", cls.db_retry_initial_delay
            ),
            db_retry_max_delay=reader.number("DB_RETRY_MAX_DELAY", cls.db_retry_max_delay),
            db_retry_timeout=reader.number("DB_RETRY_TIMEOUT", cls.db_retry_timeout),
            shutdown_grace_seconds=reader.number(
                "SHUTDOWN_GRACE_SECONDS", cls.shutdown_grace_seconds
            ),
            alert_webhook_url=reader.text("ALERT_WEBHOOK_URL"),
            alert_attempts=reader.integer("ALERT_ATTEMPTS", cls.alert_attempts),
            alert_deadline=reader.number("ALERT_DEADLINE", cls.alert_deadline),
            alert_retry_delay=reader.number("ALERT_RETRY_DELAY", cls.alert_retry_delay),
            alert_max_delay=reader.number("ALERT_MAX_DELAY", cls.alert_max_delay),
            log_format=reader.choice("LOG_FORMAT", "auto", ("auto", "json", "console")),
            log_level=reader.choice(
                "LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR"), upper=True
            ),
            dyno=reader.text("DYNO") or os.uname().nodename,
            status_password=reader.text("STATUS_PASSWORD"),
            port=reader.integer("PORT", cls.port),
        )
        return settings


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def text(self, name: str) -> str | None:
        value = self.env.get(name, "").strip()
        return value or None

    def integer(self, name: str, default: int, minimum: int = 1) -> int:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
        if value < minimum:
            raise ConfigError(f"{name} must be at least {minimum}, got {value}")
        return value

    def number(self, name: str, default: float) -> float:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a number, got {raw!r}") from None
        if not math.isfinite(value) or value <= 0:
            raise ConfigError(f"{name} must be positive, got {raw}")
        return value

    def choice(self, name: str, default: str, allowed: tuple[str, ...], upper: bool = False) -> str:
        raw = self.text(name)
        if raw is None:
            return default
        value = raw.upper() if upper else raw.lower()
        if value not in allowed:
            raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {raw!r}")
        return value
