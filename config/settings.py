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
    # Where the database URL comes from. None means: the embedded local cluster.
    database_url: str | None = field(default=None, repr=False)
    # The embedded cluster's home (git-ignored). Used only without DATABASE_URL.
    data_dir: Path = PROJECT_ROOT / ".data"

    # Rows per batch, and per transaction. bench/load.py measured execute_values flat from
    # 500 to 5000 rows per page; 1000 keeps a transaction short and a replay cheap.
    batch_size: int = 1000

    # HTTP: every request a job makes is bounded. Connect fails fast; a read may be slow.
    http_connect_timeout: float = 10.0
    http_read_timeout: float = 60.0
    # Retries for idempotent GETs on connection errors, 429, 502, 503, 504.
    http_retries: int = 3

    # libpq: a new connection that cannot be made in this many seconds is an error.
    db_connect_timeout: int = 10
    # Server-side cap on one statement, so a stuck batch never holds a run forever.
    db_statement_timeout_ms: int = 300_000

    # SIGTERM: Heroku kills 30 s after it; we finish the batch and exit well before.
    shutdown_grace_seconds: float = 20.0

    log_format: str = "auto"  # auto | json | console
    log_level: str = "INFO"

    # Heroku sets DYNO (web.1, worker.1, run.1234); recorded with each run.
    dyno: str = field(default_factory=lambda: os.uname().nodename)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        reader = _Reader(env)
        settings = cls(
            database_url=reader.text("DATABASE_URL"),
            data_dir=Path(reader.text("NIGHTSHIFT_DATA_DIR") or PROJECT_ROOT / ".data"),
            batch_size=reader.integer("BATCH_SIZE", cls.batch_size, minimum=1),
            http_connect_timeout=reader.number("HTTP_CONNECT_TIMEOUT", cls.http_connect_timeout),
            http_read_timeout=reader.number("HTTP_READ_TIMEOUT", cls.http_read_timeout),
            http_retries=reader.integer("HTTP_RETRIES", cls.http_retries, minimum=0),
            db_connect_timeout=reader.integer("DB_CONNECT_TIMEOUT", cls.db_connect_timeout),
            db_statement_timeout_ms=reader.integer(
                "DB_STATEMENT_TIMEOUT_MS", cls.db_statement_timeout_ms, minimum=0
            ),
            shutdown_grace_seconds=reader.number(
                "SHUTDOWN_GRACE_SECONDS", cls.shutdown_grace_seconds
            ),
            log_format=reader.choice("LOG_FORMAT", "auto", ("auto", "json", "console")),
            log_level=reader.choice(
                "LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR"), upper=True
            ),
            dyno=reader.text("DYNO") or os.uname().nodename,
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
