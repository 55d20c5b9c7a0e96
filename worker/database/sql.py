"""Statements built from job declarations, and batches sent in one round trip.

The layers above (the loader, migrations, the store) compose SQL with these and never import
the driver themselves. Names from job declarations always go through `Identifier`. Where a
batch's rows go in a statement, it holds `ROWS`: `execute_values` puts the VALUES list there.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import psycopg2
from psycopg2.extras import Json, execute_values
from psycopg2.sql import SQL, Composable, Composed, Identifier, Literal

from worker.database import (
    adapters,  # noqa: F401  (registers the Decimal adapter: execute_values)
    literals,
)
from worker.database.classify import describe_error, refuses_rows
from worker.database.errors import RowsRefused

__all__ = [
    "ROWS",
    "SQL",
    "Composable",
    "Composed",
    "Identifier",
    "Literal",
    "fetch_refusable",
    "insert_values",
    "jsonb",
    "render_values",
    "send_batch",
]
_SAVEPOINT = "nightshift_rows"
# The place of a batch's VALUES list. NUL never appears in rendered SQL (the server refuses it
# in text, and json.dumps escapes it), so it cannot be confused with anything a statement holds.
_MARK = "\x00rows\x00"
ROWS = SQL(_MARK)


def insert_values(
    cur: Any, statement: Composable, values: Sequence[tuple], isolated: bool = False
) -> int:
    """Send every row of `values` in one statement; return its rowcount.

    Raises RowsRefused when the rows' own values are refused (a data or constraint error, or
    a value the driver cannot send). `isolated`: under a savepoint, so that the transaction
    goes on after a refusal; otherwise the refusal aborts it.
    """
    with _savepoint(cur) if isolated else nullcontext():
        _send(cur, statement, values)
        changed = max(cur.rowcount, 0)
    return changed


@dataclass(frozen=True)
class Rendered:
    """A batch's VALUES list as execute_values writes it, on the session `conn`."""

    conn: Any
    text: bytes


class _Keeping(psycopg2.extensions.cursor):
    """A cursor that keeps what it is asked to execute instead of sending it."""

    kept = b""

    def execute(self, query: Any, vars: Any = None) -> None:
        self.kept = query


def render_values(conn: Any, values: Sequence[tuple]) -> Rendered | None:
    """`values` as the VALUES list execute_values sends, made now (e.g. in another thread while
    the session is busy), by `literals` where the session allows; None when some value cannot
    be sent (the send then says why)."""
    if not values:
        return None
    if literals.supported(conn):
        try:
            return Rendered(conn, literals.values_list(conn, values))
        except (psycopg2.Error, ValueError, TypeError):
            return None
    cur = conn.cursor(cursor_factory=_Keeping)
    try:
        execute_values(cur, "%s", values, page_size=len(values))
    except (psycopg2.Error, ValueError, TypeError):
        return None
    finally:
        cur.close()
    return Rendered(conn, cur.kept)


def send_batch(
    cur: Any, statement: Composable, values: Sequence[tuple], rendered: Rendered | None = None
) -> int:
    """Send `statement` with `values` at its ROWS (if any) as ONE statement; return its row
    count. `rendered`: the values already rendered (see `_send`).

    Sent outside a transaction block it is its own transaction: one round trip in all.
    Raises RowsRefused as `insert_values`.
    """
    _send(cur, statement, values, rendered)
    return max(cur.rowcount, 0)


def _send(
    cur: Any, statement: Composable, values: Sequence[tuple], rendered: Rendered | None = None
) -> None:
    """`statement` with `values` at its ROWS. They are rendered by `render_values` unless
    `rendered` already holds them for this very session (a batch replayed on a new one is
    rendered again); when some value cannot be, execute_values sends them and says why."""
    before, mark, after = statement.as_string(cur).partition(_MARK)
    if mark and values and (rendered is None or rendered.conn is not cur.connection):
        rendered = render_values(cur.connection, values)
    try:
        if not mark:  # nothing to put in: a plain statement, no parameters
            cur.execute(before)
        elif rendered is not None:
            encoding = psycopg2.extensions.encodings[cur.connection.encoding]
            cur.execute(before.encode(encoding) + rendered.text + after.encode(encoding))
        else:  # execute_values reads `%` as a placeholder: escape ours; ROWS becomes its `%s`.
            text = before.replace("%", "%%") + "%s" + after.replace("%", "%%")
            execute_values(cur, text, values, page_size=max(len(values), 1))
    except (psycopg2.Error, ValueError, TypeError) as exc:
        if not refuses_rows(exc):
            raise
        raise _refusal(exc) from exc


def _refusal(exc: Exception) -> RowsRefused:
    """What a driver error the rows' own values caused (`refuses_rows`) says, one line."""
    return RowsRefused(describe_error(exc).replace("\x00", "\\0"))


@contextmanager
def _savepoint(cur: Any) -> Iterator[None]:
    """The block under a savepoint: a refusal (RowsRefused) inside it is rolled back to here,
    and the caller's transaction goes on."""
    cur.execute(f"SAVEPOINT {_SAVEPOINT}")
    try:
        yield
    except RowsRefused:
        cur.execute(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}")
        raise
    cur.execute(f"RELEASE SAVEPOINT {_SAVEPOINT}")


def jsonb(value: Any, default: Callable[[Any], Any] | None = None) -> Json:
    """A value for a jsonb parameter; `default` encodes what json cannot (as json.dumps)."""
    return Json(value, dumps=lambda v: json.dumps(v, default=default, sort_keys=True))


def fetch_refusable(cur: Any, statement: Composable, params: Sequence[Any]) -> tuple | None:
    """`statement`'s first row (None: no row), under a savepoint: when the database or the
    driver refuses its values (a key the column's type cannot hold), RowsRefused, and the
    caller's transaction goes on."""
    with _savepoint(cur):
        try:
            cur.execute(statement, params)
            return cur.fetchone()
        except (psycopg2.Error, ValueError, TypeError) as exc:
            if not refuses_rows(exc):
                raise
            raise _refusal(exc) from exc
