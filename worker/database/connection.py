"""The database session: the one module that connects, reconnects and replays.

`Database.run(work)` runs `work(cursor)` in a transaction and commits. When the database moves
under it (failover, credential rotation, restart, a dead network) it resolves the URL afresh,
reconnects with backoff and replays `work` on the new session — so `work` must be idempotent,
as every batch is (upsert on a key, state in the same transaction): a COMMIT whose outcome is
unknown is safe to replay. What each driver error means is decided in `classify`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import psycopg2
from psycopg2.extensions import connection as Connection

from config import Settings
from worker.database import deadline
from worker.database.backoff import Backoff
from worker.database.classify import Action, Verdict, classify, describe_error
from worker.database.errors import (
    DatabaseError,
    DatabaseUnavailable,
    ResolverError,
    StandbyError,
)
from worker.database.resolver import Resolved, resolve
from worker.errors import ShutdownRequested
from worker.logs import get_logger

T = TypeVar("T")
log = get_logger("nightshift.db")

_SESSION_FACTS = """
SELECT pg_backend_pid(), backend_start, pg_is_in_recovery()
FROM pg_stat_activity WHERE pid = pg_backend_pid()
"""
# A session we lost may live on at the server (a blackholed client is not noticed for a long
# time) holding its locks: end it, but only if it is really ours (same pid AND start time; a
# rotation to another role leaves it alone, as we may not signal it — the rotation ended it).
_END_ZOMBIE = """
SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity
WHERE pid = %s AND backend_start = %s AND usename = current_user
"""
_PROBE = "SELECT state FROM pg_stat_activity WHERE pid = %s AND backend_start = %s"


def connect_params(resolved: Resolved, settings: Settings, application_name: str) -> dict[str, Any]:
    """libpq parameters: the resolved URL, our timeouts, and a name for pg_stat_activity."""
    params: dict[str, Any] = dict(resolved.params)
    defaults = {
        "connect_timeout": settings.db_connect_timeout,
        "keepalives": 1,
        "keepalives_idle": settings.db_keepalives_idle,
        "keepalives_interval": settings.db_keepalives_interval,
        "keepalives_count": settings.db_keepalives_count,
        "tcp_user_timeout": settings.db_tcp_user_timeout_ms,
    }
    for name, value in defaults.items():
        params.setdefault(name, str(value))
    params["application_name"] = application_name[:63]
    # UTC: a naive timestamp means the same to the server as to the engine (worker.run.values).
    timeout = f"-c statement_timeout={settings.db_statement_timeout_ms} -c timezone=UTC"
    params["options"] = f"{params.get('options', '')} {timeout}".strip()
    return params


class Database:
    """One session to the database, kept alive across faults; `run()` is the way to use it."""

    def __init__(
        self,
        settings: Settings,
        application_name: str = "nightshift",
        resolver: Callable[[Settings], Resolved] = resolve,
        writable: bool = True,
        stop: threading.Event | None = None,
    ) -> None:
        self.settings = settings
        self.application_name = application_name
        self.writable = writable
        self.resolved: Resolved | None = None
        self.conn: Connection | None = None
        self.reconnects = 0
        self.sessions = 0  # sessions opened so far: a caller sees a new one by this number
        self._resolver = resolver
        self._stop = stop
        self._hooks: list[Callable[[Any], None]] = []
        self._closing = threading.Lock()
        self._session: tuple[int, dt.datetime] | None = None
        self._lost_session: tuple[int, dt.datetime] | None = None
        self._must_resolve = True
        deadline.install()

    # -- public -----------------------------------------------------------------------------
    def on_connect(self, hook: Callable[[Any], None]) -> None:
        """Run `hook(cursor)` on every new session from now on (e.g. to LISTEN again)."""
        self._hooks.append(hook)

    def run(
        self,
        work: Callable[[Any], T],
        budget: float | None = None,
        commit: bool = True,
        single: bool = False,
    ) -> T:
        """Run `work(cursor)` in a transaction and commit; replay it through transient faults.

        `single`: each of `work`'s statements is its own transaction (no BEGIN, no COMMIT): a
        batch sent as one statement then costs one round trip. `commit=False`: roll back.
        Raises DatabaseError for a fatal error, DatabaseUnavailable once the retry budget
        (DB_RETRY_TIMEOUT, or `budget` seconds) is spent.
        """
        backoff = Backoff(self.settings, budget)
        while True:
            try:
                conn = self._connection()
                if single:
                    return self._attempt_single(conn, work)
                return self._attempt(conn, work, commit)
            except psycopg2.Error as exc:
                verdict = classify(exc, self.conn)
                if verdict.action is Action.FATAL:
                    raise DatabaseError(describe_error(exc)) from exc
                detail = describe_error(exc)
            except ResolverError as exc:
                if exc.fatal:
                    raise
                verdict, detail = Verdict(Action.RESOLVE, "resolver_failed"), str(exc)
            self._recover(verdict)
            delay = backoff.next_delay()
            if delay is None:
                raise DatabaseUnavailable(
                    f"gave up after {backoff.elapsed:.0f} s and {backoff.attempts} attempts;"
                    f" last cause {verdict.cause}: {detail}"
                )
            log.warning(
                "db_retry",
                cause=verdict.cause,
                action=verdict.action.value,
                attempt=backoff.attempts,
                wait_s=round(delay, 2),
                source=self.resolved.describe() if self.resolved else None,
                error=detail,
            )
            self._sleep(delay)

    @contextlib.contextmanager
    def quoting(self) -> Iterator[Connection | None]:
        """The current session, for another thread to render values with (`sql.render_values`)
        while this one may be executing on it; None when there is none. psycopg2 lets threads
        share a connection; this block only makes sure it is not closed meanwhile."""
        with self._closing:
            conn = self.conn
            yield conn if conn is not None and not conn.closed else None

    def close(self) -> None:
        with self._closing:
            if self.conn is not None and not self.conn.closed:
                self.conn.close()
            self.conn = None

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one attempt ------------------------------------------------------------------------
    def _attempt(self, conn: Connection, work: Callable[[Any], T], commit: bool = True) -> T:
        try:
            with conn.cursor() as cur:
                result = work(cur)
            if commit:
                conn.commit()
            else:  # a dry run: see what the database says, keep nothing
                conn.rollback()
            return result
        except BaseException:
            if not conn.closed:
                with contextlib.suppress(psycopg2.Error):  # a dead session: the caller sees it
                    conn.rollback()
            raise

    def _attempt_single(self, conn: Connection, work: Callable[[Any], T]) -> T:
        with _autocommit(conn) as cur:
            return work(cur)

    def _connection(self) -> Connection:
        if self.conn is not None and not self.conn.closed:
            return self.conn
        if self._must_resolve or self.resolved is None:
            self.resolved = self._resolver(self.settings)
            self._must_resolve = False
        params = connect_params(self.resolved, self.settings, self.application_name)
        with deadline.connecting(self.settings.db_connect_timeout):
            conn = psycopg2.connect(**params)
        self.conn = conn
        self._session = None
        deadline.watch(conn, self.settings.db_silence_timeout, lambda: self._probe(params))
        try:
            self._prepare(conn, params)
        except BaseException:
            self.close()
            raise
        if self.sessions:
            self.reconnects += 1
            log.info("db_reconnected", source=self.resolved.describe(), reconnects=self.reconnects)
        self.sessions += 1
        return conn

    def _prepare(self, conn: Connection, params: dict[str, Any]) -> None:
        """A new session: learn who it is, end our lost one, refuse a standby, run the hooks."""
        with _autocommit(conn) as cur:  # reads and one signal: no BEGIN/COMMIT round trips
            cur.execute(_SESSION_FACTS)
            pid, started, in_recovery = cur.fetchone()
            self._session = (pid, started)
            if self._lost_session is not None:
                cur.execute(_END_ZOMBIE, self._lost_session)
                self._lost_session = None
        if self.writable and in_recovery:
            raise StandbyError("the server is a read-only standby (pg_is_in_recovery)")
        for hook in self._hooks:
            self._attempt(conn, hook)

    def _probe(self, params: dict[str, Any]) -> bool:
        """Over a second connection: is our session still at the server, and working?"""
        if self._session is None:
            return False
        probe_params = {**params, "application_name": f"{self.application_name}:probe"[:63]}
        try:
            with deadline.connecting(self.settings.db_connect_timeout):
                probe = psycopg2.connect(**probe_params)
            try:
                deadline.watch(probe, self.settings.db_connect_timeout, None)
                with probe.cursor() as cur:
                    cur.execute(_PROBE, self._session)
                    row = cur.fetchone()
            finally:
                probe.close()
        except psycopg2.Error:
            return False
        return row is not None and row[0] == "active"

    def _recover(self, verdict: Verdict) -> None:
        """Forget a session that cannot be used again; resolve afresh when the URL may move."""
        if verdict.action is Action.RETRY and self.conn is not None and not self.conn.closed:
            return  # same session, new transaction
        if self.conn is not None:
            self._lost_session = self._session
            self.close()
        if verdict.action is Action.RESOLVE:
            self._must_resolve = True

    def _sleep(self, delay: float) -> None:
        if self._stop is None:
            time.sleep(delay)
        elif self._stop.wait(delay):
            raise ShutdownRequested()


@contextlib.contextmanager
def _autocommit(conn: Connection) -> Iterator[Any]:
    """A cursor whose statements are each their own transaction. Client-side only: psycopg2
    just stops sending BEGIN, so the session is the same one after."""
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            yield cur
    finally:
        if not conn.closed:
            conn.autocommit = False
