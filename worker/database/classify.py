"""What a driver error means, decided in this one place.

Four answers: re-resolve the URL and reconnect (the session is gone or the server moved),
back off on the same URL (the server is busy or starting), retry the transaction on the same
session (serialization failure, deadlock), or give up (data, constraint and SQL errors).

What psycopg2 really raises (../shared/notes/postgres-faults.md): after ANY fault that cuts
a live session it is OperationalError with pgcode None ("server closed the connection
unexpectedly"); a new connection that fails never carries a pgcode either, the reason is only
text. So SQLSTATEs are used where they exist, `conn.closed` and libpq's text where they do not.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import psycopg2
import psycopg2.errors
from psycopg2 import errorcodes

from worker.database.errors import StandbyError


class Action(enum.Enum):
    RESOLVE = "resolve and reconnect"
    BACKOFF = "back off on the same URL"
    RETRY = "retry the transaction"
    FATAL = "fatal"


@dataclass(frozen=True)
class Verdict:
    action: Action
    cause: str  # a short name for logs: auth_failed, session_lost, read_only, ...


# libpq's text, for errors that carry no SQLSTATE (first match wins).
_TEXT = [
    ("too many clients already", Action.BACKOFF, "too_many_connections"),
    ("remaining connection slots are reserved", Action.BACKOFF, "too_many_connections"),
    ("too many connections", Action.BACKOFF, "too_many_connections"),
    ("password authentication failed", Action.RESOLVE, "auth_failed"),
    ("no pg_hba.conf entry", Action.RESOLVE, "auth_failed"),
    ("authentication failed", Action.RESOLVE, "auth_failed"),
    ('role "', Action.RESOLVE, "auth_failed"),  # role "…" does not exist
    ('database "', Action.RESOLVE, "database_missing"),  # database "…" does not exist
    ("is starting up", Action.BACKOFF, "server_starting"),
    ("not yet accepting connections", Action.BACKOFF, "server_starting"),
    ("in recovery mode", Action.BACKOFF, "server_starting"),
    ("is shutting down", Action.RESOLVE, "server_shutting_down"),
    ("connection refused", Action.RESOLVE, "connection_refused"),
    ("could not translate host name", Action.RESOLVE, "dns"),
    ("timeout expired", Action.RESOLVE, "timeout"),
    ("no answer from the server", Action.RESOLVE, "no_answer"),
    ("could not connect", Action.RESOLVE, "connection_refused"),
]

_BY_SQLSTATE = {
    errorcodes.READ_ONLY_SQL_TRANSACTION: (Action.RESOLVE, "read_only"),
    errorcodes.ADMIN_SHUTDOWN: (Action.RESOLVE, "session_lost"),
    errorcodes.CRASH_SHUTDOWN: (Action.RESOLVE, "session_lost"),
    errorcodes.CANNOT_CONNECT_NOW: (Action.BACKOFF, "server_starting"),
    errorcodes.TOO_MANY_CONNECTIONS: (Action.BACKOFF, "too_many_connections"),
    errorcodes.SERIALIZATION_FAILURE: (Action.RETRY, "serialization_failure"),
    errorcodes.DEADLOCK_DETECTED: (Action.RETRY, "deadlock"),
    errorcodes.IDLE_IN_TRANSACTION_SESSION_TIMEOUT: (Action.RESOLVE, "session_lost"),
}


def classify(exc: BaseException, conn: object | None = None) -> Verdict:
    """The verdict on a psycopg2 error raised while using (or opening) `conn`."""
    if isinstance(exc, StandbyError):
        return Verdict(Action.RESOLVE, "read_only")
    pgcode = getattr(exc, "pgcode", None)
    if pgcode in _BY_SQLSTATE:
        return Verdict(*_BY_SQLSTATE[pgcode])
    if pgcode and pgcode.startswith(("08", "28")):  # connection exception, invalid authorization
        return Verdict(Action.RESOLVE, "auth_failed" if pgcode.startswith("28") else "session_lost")
    if not isinstance(exc, psycopg2.OperationalError | psycopg2.InterfaceError) or pgcode:
        return Verdict(Action.FATAL, "error")
    text = str(exc).lower()
    for needle, action, cause in _TEXT:
        if needle in text:
            return Verdict(action, cause)
    # No SQLSTATE and no telling text: a session that died under us.
    return Verdict(Action.RESOLVE, "session_lost")


# Errors a row's own values cause (besides classes 22, data, and 23, constraints): a value of
# the wrong type, one that cannot be coerced, one too big for an index; two rows of one
# statement with keys the table finds equal (21000, "cannot affect row a second time"), which
# the loader's de-duplication missed: written apart, they go in one after the other.
_ROW_SQLSTATES = frozenset({"21000", "42804", "42846", "54000"})


def refuses_rows(exc: BaseException) -> bool:
    """Did the rows' values cause this error (as opposed to a fault, or a wrong statement)?"""
    if isinstance(exc, ValueError | TypeError):  # the driver adapting a value (NUL in a string)
        return True
    pgcode = getattr(exc, "pgcode", None)
    if pgcode:
        return pgcode[:2] in ("22", "23") or pgcode in _ROW_SQLSTATES
    return isinstance(exc, psycopg2.ProgrammingError) and "can't adapt" in str(exc)


def describe_error(exc: BaseException) -> str:
    """One line: SQLSTATE and the server's primary message, or the driver's telling line."""
    pgcode = getattr(exc, "pgcode", None)
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    if primary:
        return f"{pgcode} {primary}" if pgcode else primary
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    # libpq: 'connection to server at "h" (ip), port p failed: FATAL:  the reason'
    telling = next((line for line in lines if "FATAL:" in line), lines[0] if lines else "")
    text = telling.split("FATAL:", 1)[-1].strip() if "FATAL:" in telling else telling
    return text or type(exc).__name__
