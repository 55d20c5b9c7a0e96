"""Cursor and version values, converted to their column's declared type as rows arrive.

A job may yield a date as `date(2024, 1, 2)` or as `"2024-01-02"`, a time as an aware or a
naive datetime or an ISO string: the engine compares and saves them as the column's type, so a
cursor never meets a value it cannot compare with. Naive timestamps are read as UTC (for a
`timestamptz` column; a `timestamp` column keeps them naive and turns aware ones into naive
UTC), as Heroku Postgres runs in UTC. A value that cannot be converted is a refused row; so
is NaN or ±Infinity in a number column (float, Decimal or text like "NaN", "-inf"): NaN has
no order Python can compare, and a cursor at Infinity would never let another row pass it.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any

from worker.run.errors import Unconvertible

INTEGERS = ("smallint", "integer", "int", "bigint", "int2", "int4", "int8")
FLOATS = ("double precision", "real", "float8", "float4", "float")
TEXTS = ("text", "varchar", "character varying", "char", "character", "citext")
# The types a cursor or a version column may have.
ORDERED_TYPES = (
    "date, timestamp, timestamptz, smallint, integer, bigint, numeric, real,"
    " double precision, text, varchar, uuid"
)


def base_type(sql_type: str) -> str:
    """`numeric(18, 8)` → `numeric`; `character varying(20)` → `character varying`."""
    return sql_type.strip().lower().split("(")[0].strip()


@cache  # once per column type: a cursor's or a version's value is converted for every row
def converter(sql_type: str) -> Callable[[Any], Any] | None:
    """How to convert a value for a column of `sql_type`; None when the type has no order
    Nightshift knows (such a column cannot be a cursor or a version)."""
    kind = base_type(sql_type)
    if kind in ("timestamptz", "timestamp with time zone"):
        return _timestamptz
    if kind in ("timestamp", "timestamp without time zone"):
        return _timestamp
    if kind == "date":
        return _date
    if kind in INTEGERS:
        return _integer
    if kind in ("numeric", "decimal"):
        return _numeric
    if kind in FLOATS:
        return _float
    if kind in TEXTS:
        return _text
    if kind == "uuid":
        return _uuid
    return None


def convert(sql_type: str, value: Any) -> Any:
    """`value` as the column's type (None stays None); Unconvertible when it cannot be."""
    if value is None:
        return None
    convert_value = converter(sql_type)
    if convert_value is None:
        raise Unconvertible(f"a column of type {sql_type} cannot be a cursor or a version")
    try:
        return convert_value(value)
    except Unconvertible:
        raise
    except (ValueError, TypeError, ArithmeticError, InvalidOperation):
        pass
    raise Unconvertible(f"{_show(value)} is not a valid {base_type(sql_type)}")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _refuse_bool(value: Any) -> None:
    if isinstance(value, bool):
        raise TypeError("a bool is not a number")


def _parse_datetime(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, dt.date):
        return dt.datetime.combine(value, dt.time())
    if isinstance(value, str):
        return dt.datetime.fromisoformat(value.strip())
    raise TypeError(type(value).__name__)


def _timestamptz(value: Any) -> dt.datetime:
    if value.__class__ is dt.datetime and value.tzinfo is dt.UTC:  # the common case, per row
        return value
    parsed = _parse_datetime(value)
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def _timestamp(value: Any) -> dt.datetime:
    parsed = _parse_datetime(value)
    if parsed.tzinfo is None:
        return parsed
    return parsed.astimezone(dt.UTC).replace(tzinfo=None)


def _date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            return dt.date.fromisoformat(text)
        except ValueError:
            return dt.datetime.fromisoformat(text).date()
    raise TypeError(type(value).__name__)


def _integer(value: Any) -> int:
    _refuse_bool(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float | Decimal):
        if not math.isfinite(value) or value != int(value):
            raise ValueError("not a whole number")
        return int(value)
    if isinstance(value, str):
        return int(value.strip())
    raise TypeError(type(value).__name__)


def _not_finite(value: Any) -> Unconvertible:
    return Unconvertible(
        f"{_show(value)} is not a finite number: NaN and ±Infinity cannot be a cursor or a version"
    )


def _numeric(value: Any) -> Decimal:
    _refuse_bool(value)
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        return Decimal(value)
    elif isinstance(value, float | str):
        number = Decimal(str(value).strip())
    else:
        raise TypeError(type(value).__name__)
    if not number.is_finite():
        raise _not_finite(value)
    return number


def _float(value: Any) -> float:
    _refuse_bool(value)
    if isinstance(value, int | float | Decimal | str):
        if isinstance(value, Decimal) and not value.is_finite():  # float() refuses a sNaN
            raise _not_finite(value)
        number = float(value)
        if not math.isfinite(number):
            raise _not_finite(value)
        return number
    raise TypeError(type(value).__name__)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float | Decimal | uuid.UUID) and not isinstance(value, bool):
        return str(value)
    raise TypeError(type(value).__name__)


def _uuid(value: Any) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str):
        return uuid.UUID(value.strip())
    raise TypeError(type(value).__name__)
