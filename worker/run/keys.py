"""A key as PostgreSQL compares it: the identity a batch is de-duplicated by.

PostgreSQL refuses a statement that touches one row twice (21000 "ON CONFLICT DO UPDATE
command cannot affect row a second time"), so a batch holding one key twice keeps one row of
it (`Loader.reduce`). "One key" must mean what the table's unique index means: a text key sent
as `1` and as `"1"`, a uuid in upper and in lower case, one instant written with two offsets,
`1.0` and `1.00` in a numeric column are one key there. The identity here is each value
converted to its column's type as the server converts the literal execute_values writes for it
(a float is written as a numeric literal, a naive datetime as a timestamp, a bool as a bool).
The values sent stay as the job yielded them; only the identity changes.

Two rules keep it safe. An identity is only ever computed where the server's conversion is
known exactly (strings are matched against the server's own grammar, not parsed by Python's
more lenient one): two values with one identity are stored as one value, so merging them never
drops a row the server would have kept apart. Anything else (a spelling Python does not parse,
a type not handled here) is its own identity: no row is refused for it, and should the server
still find two of them equal, the batch's isolation path writes them one after the other
(`worker.database.classify` counts 21000 as refused rows). A bool is never equal to a number
here, although it is in Python (True == 1).

This runs for every row: the common spellings (an int or a str as they are, a canonical uuid,
a UTC datetime, a finite Decimal) return at once, for 35-250 ns a row; the rest pay for their
conversion (0.4-0.7 µs).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Context, Decimal
from functools import cache
from typing import Any

from worker.run.values import FLOATS, INTEGERS, base_type

Identity = Callable[[Any], Any]

# The server's grammars (PostgreSQL 15 int8in, numeric_in, float8in, uuid_in, ISO 8601 as
# timestamptz_in reads it), ASCII digits only: Python's int() and Decimal() also take
# underscores and other scripts' digits, which the server refuses.
_SPACE = "[ \t\n\r\f\v]*"
_INTEGER = re.compile(f"{_SPACE}[+-]?[0-9]{{1,19}}{_SPACE}")
_NUMBER = re.compile(
    f"{_SPACE}([+-]?(?:[0-9]+(?:\\.[0-9]*)?|\\.[0-9]+)(?:[eE][+-]?[0-9]{{1,4}})?){_SPACE}"
)
_SPECIAL = re.compile(f"{_SPACE}(?i:([+-]?)(inf|infinity)|(nan)){_SPACE}")
_UUID = re.compile(r"(\{)?([0-9a-fA-F]{4}(?:-?[0-9a-fA-F]{4}){7})(?(1)\})")
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_MOMENT = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"(?:[Tt ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{1,6}))?)?"
    r"([Zz]|([+-])([0-9]{2})(?::?([0-9]{2}))?)?)?"
)
# numeric: at most this many digits either side of the point (the server's own limits are far
# beyond; past these the value is its own identity, and formatting stays cheap).
_NUMERIC_DIGITS = 1000
_WIDE = Context(prec=2 * _NUMERIC_DIGITS + 10)
# The greatest UTC offset the server accepts in a timestamp literal (15:59:59).
_MAX_OFFSET = dt.timedelta(hours=15, minutes=59, seconds=59)


class _Special:
    """An identity equal only to itself."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


# NaN is one value in the server's numeric and float order (Python's equals nothing, itself
# included); a bool is not a number there (Python's True == 1).
NAN, TRUE, FALSE = _Special("NaN"), _Special("true"), _Special("false")


@cache  # once per column type; the identity runs for every row's key
def identity(sql_type: str) -> Identity:
    """The identity of a key value in a column of `sql_type` (`own` for a type whose
    spellings are not converted here). Never raises."""
    kind = base_type(sql_type)
    size = _length(sql_type)
    if kind in ("text", "varchar", "character varying"):
        return _fast(str, _text) if size is None else _guard(lambda v: _varchar(_text(v), size))
    if kind in ("char", "character", "bpchar"):
        return _guard(lambda v: _text(v).rstrip(" "))
    if kind == "citext":
        return _guard(_citext)
    if kind in INTEGERS:
        return _fast(int, _integer)
    if kind in ("numeric", "decimal"):
        scale = _scale(sql_type)
        if scale is not None:
            return _guard(lambda v: _rounded(_numeric(v), scale))
        numeric = _guard(_numeric)  # Python compares int and Decimal by value, as numeric does
        return lambda v: (
            v if type(v) is int or (type(v) is Decimal and v.is_finite()) else numeric(v)
        )
    if kind in ("real", "float4") or (kind == "float" and (size or 53) <= 24):
        # The exact value of the literal: two equal values round to one float4; two that
        # differ may still round to one, which is not claimed here (their own identities).
        return _guard(_numeric)
    if kind in FLOATS:
        double = _guard(_double)
        return lambda v: v if type(v) is float and v == v else double(v)
    if kind == "uuid":
        canonical, spelled = _CANONICAL_UUID.fullmatch, _guard(_uuid)
        return lambda v: v if type(v) is str and canonical(v) else spelled(v)
    if kind in ("timestamptz", "timestamp with time zone"):
        instant = _guard(_instant)
        return lambda v: v if type(v) is dt.datetime and v.tzinfo is dt.UTC else instant(v)
    if kind in ("timestamp", "timestamp without time zone"):
        return _guard(_local)
    if kind == "date":
        return _guard(_date)
    return own


def own(value: Any) -> Any:
    """A value as its own identity: itself, but a bool never equals a number."""
    if type(value) is bool:
        return TRUE if value else FALSE
    return value


def _guard(convert: Identity) -> Identity:
    def identify(value: Any) -> Any:
        try:
            return convert(value)
        except Exception:  # not a value or a spelling converted here (ValueError, mostly)
            return own(value)

    return identify


def _fast(kind: type, convert: Identity) -> Identity:
    """`_guard(convert)`, with the common case (a value already of `kind`) returned at once."""
    slow = _guard(convert)

    def identify(value: Any) -> Any:
        return value if type(value) is kind else slow(value)

    return identify


def _length(sql_type: str) -> int | None:
    inside = sql_type.partition("(")[2].partition(")")[0]
    return int(inside) if inside.strip().isdigit() else None


def _scale(sql_type: str) -> int | None:
    inside = sql_type.partition("(")[2].partition(")")[0].split(",")
    if len(inside) != 2:  # numeric(p) has scale 0; plain numeric keeps what it is given
        return 0 if inside[0].strip().lstrip("-").isdigit() else None
    return int(inside[1])


# -- text --------------------------------------------------------------------------------------
def _text(value: Any) -> str:
    """The text the server stores for the literal execute_values writes for `value`."""
    kind = type(value)
    if kind is str:
        return value
    if kind is int:
        return str(value)
    if kind is bool:
        return "true" if value else "false"
    if kind is float:
        if value != value:
            return "NaN"
        if value in (_INF, -_INF):
            return "Infinity" if value > 0 else "-Infinity"
        return _numeric_text(Decimal(repr(value)))  # written as a numeric literal
    if kind is Decimal:
        return _numeric_text(value)
    raise ValueError  # not converted here: its own identity


def _numeric_text(value: Decimal) -> str:
    """numeric_out: no exponent, as many decimals as given, no negative zero."""
    if value.is_nan():
        return "NaN"
    if value.is_infinite():
        return "-Infinity" if value.is_signed() else "Infinity"
    _bounded(value)
    text = format(value, "f")
    return text[1:] if text[0] == "-" and not value else text


def _varchar(text: str, size: int) -> str:
    # The server cuts spaces beyond the length (and refuses anything else there).
    return text[:size] if len(text) > size and not text[size:].strip(" ") else text


def _citext(value: Any) -> str:
    text = _text(value)
    if not text.isascii():  # lower() beyond ASCII follows the server's locale
        raise ValueError
    return text.lower()


# -- numbers -----------------------------------------------------------------------------------
_INF = float("inf")


def _bounded(value: Decimal) -> None:
    if value and not -_NUMERIC_DIGITS < value.adjusted() < _NUMERIC_DIGITS:
        raise ValueError
    if -value.as_tuple().exponent > _NUMERIC_DIGITS:  # type: ignore[operator]
        raise ValueError


def _integer(value: Any) -> int:
    kind = type(value)
    if kind is str and _INTEGER.fullmatch(value):
        return int(value)
    if kind is float or kind is Decimal:  # a numeric literal, rounded half away from zero
        number = _numeric(value)
        if not isinstance(number, Decimal) or not number.is_finite():
            raise ValueError
        _bounded(number)
        return int(number.to_integral_value(rounding=ROUND_HALF_UP))
    raise ValueError


def _numeric(value: Any) -> Any:
    """numeric_in of the literal: a Decimal (by value: 1.0 == 1.00), NAN, or ±Infinity."""
    kind = type(value)
    if kind is int:
        return value
    if kind is Decimal:
        number = value
    elif kind is float:
        number = Decimal(repr(value)) if value == value else Decimal("NaN")
    elif kind is str:
        number = _number(value)
    else:
        raise ValueError
    return NAN if number.is_nan() else number


def _number(text: str) -> Decimal:
    match = _NUMBER.fullmatch(text)
    if match:
        return Decimal(match.group(1))
    special = _SPECIAL.fullmatch(text)
    if special is None:
        raise ValueError
    if special.group(3):
        return Decimal("NaN")
    return Decimal("-Infinity" if special.group(1) == "-" else "Infinity")


def _rounded(number: Any, scale: int) -> Any:
    """numeric(p, s): rounded half away from zero to `s` decimals (the server's way; a
    negative scale rounds to tens, hundreds…)."""
    if type(number) is int:
        number = Decimal(number)
    elif number is NAN or not number.is_finite():
        return number
    return number.quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP, context=_WIDE)


def _double(value: Any) -> Any:
    """double precision: the float the server reads from the literal (correctly rounded, as
    Python's); values it cannot hold (they overflow, or underflow to zero) are their own."""
    number = _numeric(value)
    if number is NAN:
        return NAN
    result = float(number)  # an int too big for a float raises: its own identity
    finite = type(number) is Decimal and number.is_finite()
    if finite and (result in (_INF, -_INF) or (number and not result)):
        raise ValueError
    return result


# -- uuid --------------------------------------------------------------------------------------
def _uuid(value: Any) -> str:
    """uuid_in: its canonical text (lower case, 8-4-4-4-12), which no string outside uuid_in's
    grammar is. A uuid.UUID object stays its own identity: psycopg2 cannot send one (the row
    is refused), so it must not merge with a string the server stores."""
    if type(value) is str:
        match = _UUID.fullmatch(value)
        if match:
            h = match.group(2).replace("-", "").lower()
            return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
    raise ValueError


# -- times -------------------------------------------------------------------------------------
def _instant(value: Any) -> dt.datetime:
    """timestamptz: the instant (sessions run in UTC, so a naive value is UTC). Python compares
    and hashes aware datetimes by their instant already, whatever their offsets."""
    moment = _moment(value)
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment


def _local(value: Any) -> dt.datetime:
    """timestamp: an aware datetime (written as timestamptz) becomes naive UTC; the server
    ignores the offset in a string, so a string's offset is dropped."""
    if type(value) is str:
        return _moment(value).replace(tzinfo=None)
    moment = _moment(value)
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(dt.UTC).replace(tzinfo=None)


def _date(value: Any) -> dt.date:
    kind = type(value)
    if kind is dt.date:
        return value
    if kind is dt.datetime:
        if value.tzinfo is None:
            return value.date()
        return _moment(value).astimezone(dt.UTC).date()  # written as timestamptz: in UTC
    if kind is str:  # date_in ignores a time and an offset written after the date
        return _moment(value).date()
    raise ValueError


def _moment(value: Any) -> dt.datetime:
    kind = type(value)
    if kind is dt.datetime:
        offset = value.utcoffset()
        if offset is not None and (offset.microseconds or abs(offset) > _MAX_OFFSET):
            raise ValueError  # an offset the server would not read
        return value
    if kind is dt.date:
        return dt.datetime(value.year, value.month, value.day)
    if kind is not str:
        raise ValueError
    match = _MOMENT.fullmatch(value)
    if match is None:
        raise ValueError
    year, month, day, hour, minute, second, fraction, zone, sign, hours, minutes = match.groups()
    tz = None
    if zone in ("Z", "z"):
        tz = dt.UTC
    elif zone:
        offset = dt.timedelta(hours=int(hours), minutes=int(minutes or 0))
        if offset > _MAX_OFFSET:
            raise ValueError
        tz = dt.timezone(-offset if sign == "-" else offset)
    return dt.datetime(
        int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0),
        int((fraction or "0").ljust(6, "0")), tzinfo=tz,
    )  # fmt: skip
