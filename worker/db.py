"""The database connection: the one module that connects, and where driver errors are classified.

`Database` owns one session (a run holds one). `transaction()` yields a cursor inside a
transaction that commits on success and rolls back on error, and turns driver errors into
the typed ones of `worker.errors`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg2
import psycopg2.errors
from psycopg2.extensions import connection as Connection

from config import Settings
from worker.errors import DatabaseError, DatabaseUnavailable
from worker.resolver import Resolved, resolve


class Failure(enum.Enum):
    """What to do about a driver error."""

    RECONNECT = "reconnect"  # the session is gone or the server moved: resolve afresh, reconnect
    FATAL = "fatal"  # data, constraint or SQL error: retrying cannot help


def classify(exc: BaseException, conn: Connection | None) -> Failure:
    """Decide what a driver error means. Lost sessions carry no SQLSTATE: look at `conn`."""
    lost = conn is None or conn.closed or getattr(exc, "pgcode", None) is None
    if isinstance(exc, psycopg2.OperationalError | psycopg2.InterfaceError) and lost:
        return Failure.RECONNECT
    if isinstance(exc, psycopg2.errors.ReadOnlySqlTransaction):
        return Failure.RECONNECT
    return Failure.FATAL


def describe_error(exc: BaseException) -> str:
    """One line: SQLSTATE and the server's primary message, or the driver's first line."""
    pgcode = getattr(exc, "pgcode", None)
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    text = primary or (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    text = text.removeprefix("FATAL:").strip()
    return f"{pgcode} {text}" if pgcode else text


def connect_params(resolved: Resolved, settings: Settings, application_name: str) -> dict[str, Any]:
    """libpq parameters: the resolved URL plus our timeouts and a name for pg_stat_activity."""
    params: dict[str, Any] = dict(resolved.params)
    params.setdefault("connect_timeout", str(settings.db_connect_timeout))
    params.setdefault("keepalives", "1")
    params.setdefault("keepalives_idle", "10")
    params.setdefault("keepalives_interval", "5")
    params.setdefault("keepalives_count", "3")
    params["application_name"] = application_name[:63]
    timeout = f"-c statement_timeout={settings.db_statement_timeout_ms}"
    params["options"] = f"{params.get('options', '')} {timeout}".strip()
    return params


class Database:
    """One session to the database, resolved and connected on first use."""

    def __init__(
        self,
        settings: Settings,
        application_name: str = "nightshift",
        resolver: Callable[[Settings], Resolved] = resolve,
    ) -> None:
        self.settings = settings
        self.application_name = application_name
        self._resolver = resolver
        self.resolved: Resolved | None = None
        self.conn: Connection | None = None

    def connect(self) -> Connection:
        if self.conn is not None and not self.conn.closed:
            return self.conn
        self.resolved = self._resolver(self.settings)
        params = connect_params(self.resolved, self.settings, self.application_name)
        try:
            self.conn = psycopg2.connect(**params)
        except psycopg2.Error as exc:
            raise DatabaseUnavailable(
                f"cannot connect to {self.resolved.describe()}: {describe_error(exc)}"
            ) from None
        return self.conn

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """A cursor in a transaction: commit on success, roll back and raise typed on error."""
        conn = self.connect()
        try:
            with conn, conn.cursor() as cur:
                yield cur
        except psycopg2.Error as exc:
            raise self._wrap(exc) from exc

    def execute(self, query: Any, args: Any = None) -> list[tuple]:
        """Run one statement in its own transaction and return its rows (if any)."""
        with self.transaction() as cur:
            cur.execute(query, args)
            return cur.fetchall() if cur.description else []

    def close(self) -> None:
        if self.conn is not None and not self.conn.closed:
            self.conn.close()
        self.conn = None

    def _wrap(self, exc: psycopg2.Error) -> DatabaseError:
        if classify(exc, self.conn) is Failure.RECONNECT:
            where = self.resolved.describe() if self.resolved else "the database"
            return DatabaseUnavailable(f"lost the session to {where}: {describe_error(exc)}")
        return DatabaseError(describe_error(exc))

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
