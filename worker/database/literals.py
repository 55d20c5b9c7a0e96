"""A batch's VALUES list, made the way execute_values makes it, several times faster.

execute_values adapts every value through psycopg2's adaptation protocol, ~1.5 µs a value
(3 µs for a datetime): for wide batches the largest cost of a run. For the types jobs yield
most (None, bool, int, float, Decimal, str, date, datetime, all of their exact type) this
module writes the literal itself, byte for byte what psycopg2 writes (with our Decimal adapter,
`adapters`; tests/integration/test_literals.py compares them on hostile and generated values);
any other value goes through psycopg2's own adapter here.

Only on a session where that equality holds: client encoding UTF8 and
standard_conforming_strings on (Heroku's, and every server's default since 9.1), where a
string literal is its text between quotes with quotes doubled. Elsewhere, and for anything the
fast path cannot write, the caller renders with execute_values.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from psycopg2.extensions import adapt

from worker.database.adapters import decimal_literal


def supported(conn: Any) -> bool:
    """Does this session read literals as this module writes them?"""
    status = conn.get_parameter_status
    return (
        conn.encoding == "UTF8"
        and status("client_encoding") == "UTF8"
        and status("standard_conforming_strings") == "on"
    )


def values_list(conn: Any, rows: Sequence[tuple]) -> bytes:
    """`rows` as `(v, …),(v, …)` in the session's encoding. Raises ValueError (a string holding
    NUL, as psycopg2 does) or psycopg2's error for a value it cannot adapt."""
    literal = _literal_for(conn)
    return ",".join(["(" + ",".join(map(literal, row)) + ")" for row in rows]).encode()


def _literal_for(conn: Any) -> Callable[[Any], str]:
    writers = _WRITERS.get

    def adapted(value: Any) -> str:  # psycopg2's own way, for the rest
        adapter = adapt(value)
        prepare = getattr(adapter, "prepare", None)
        if prepare is not None:
            prepare(conn)
        quoted = adapter.getquoted()
        if isinstance(quoted, bytes):
            return quoted.decode()
        if isinstance(quoted, str):  # psycopg2 accepts a str too (and encodes it)
            return quoted
        raise TypeError(f"{type(adapter).__name__}.getquoted() returned {type(quoted).__name__}")

    def literal(value: Any) -> str:
        # type(), not __class__: an object can claim any class; psycopg2 adapts by type too.
        writer = writers(type(value))
        if writer is None:
            return adapted(value)
        text = writer(value)
        return adapted(value) if text is None else text

    return literal


def _signed(text: str) -> str:
    # As psycopg2: a space before a minus, so that `-` after an operator never makes `--`.
    return " " + text if text[0] == "-" else text


def _text(value: str) -> str:
    if "\x00" in value:
        raise ValueError("A string literal cannot contain NUL (0x00) characters.")
    return "'" + value.replace("'", "''") + "'"


def _float(value: float) -> str | None:
    if value != value or value in (_INF, -_INF):
        return None  # NaN and infinities: psycopg2 writes them as quoted literals
    return _signed(repr(value))


def _datetime(value: dt.datetime) -> str:
    kind = "timestamp" if value.tzinfo is None else "timestamptz"
    return f"'{value.isoformat()}'::{kind}"


_INF = float("inf")
# Writers by exact type (a subclass may adapt differently); None from one: use psycopg2's.
_WRITERS: dict[type, Callable[[Any], str | None]] = {
    type(None): lambda value: "NULL",
    bool: lambda value: "true" if value else "false",
    int: lambda value: _signed(str(value)),
    float: _float,
    Decimal: decimal_literal,
    str: _text,
    dt.date: lambda value: f"'{value.isoformat()}'::date",
    dt.datetime: _datetime,
}
