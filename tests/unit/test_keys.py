"""A key's identity (worker.run.keys) is its value as the table compares it: two spellings the
server stores as one value share one identity, and nothing else does. (The server's side of
each case is checked against a real PostgreSQL in tests/integration/test_key_identity.py.)"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest

from worker.run.keys import NAN, identity

U = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
PLUS2 = dt.timezone(dt.timedelta(hours=2))

ONE_KEY = [
    ("text", 1, "1"),
    ("text", True, "true"),
    ("text", 1.5, "1.5"),
    ("text", 1e20, "100000000000000000000"),
    ("text", -0.0, "0.0"),
    ("text", Decimal("1.50"), "1.50"),
    ("text", Decimal("1E+2"), "100"),
    ("text", float("nan"), "NaN"),
    ("varchar(3)", "ab   ", "ab "),
    ("char(4)", "ab", "ab  "),
    ("bpchar", "x", "x "),
    ("bigint", 7, " 7 "),
    ("bigint", 7, "+7"),
    ("bigint", 2, 1.5),  # a float is a numeric literal, rounded half away from zero
    ("integer", -3, Decimal("-2.5")),
    ("smallint", 1, "0001"),
    ("numeric", Decimal("1.0"), Decimal("1.00")),
    ("numeric", 1, "1e0"),
    ("numeric", Decimal("0.1"), 0.1),
    ("numeric", Decimal("NaN"), "nan"),
    ("numeric", Decimal("Infinity"), " inf "),
    ("numeric", float("-inf"), "-Infinity"),
    ("numeric(6,2)", Decimal("1.005"), "1.01"),
    ("numeric(6,-1)", 15, 20),
    ("double precision", 1, 1.0),
    ("double precision", "0.1", 0.1),
    ("double precision", -0.0, 0.0),
    ("double precision", float("nan"), Decimal("NaN")),
    ("real", 1, Decimal("1.0")),
    ("uuid", U, U.upper()),
    ("uuid", U, "{" + U + "}"),
    ("uuid", U, U.replace("-", "")),
    ("uuid", U, "a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11"),
    ("timestamptz", dt.datetime(2024, 1, 2, 3, tzinfo=dt.UTC), dt.datetime(2024, 1, 2, 5, tzinfo=PLUS2)),  # noqa: E501
    ("timestamptz", dt.datetime(2024, 1, 2, 3), "2024-01-02T05:00:00+02:00"),
    ("timestamptz", "2024-01-02 03:00Z", "2024-01-02T04:00:00.000000+0100"),
    ("timestamptz", dt.date(2024, 1, 2), "2024-01-02"),
    ("timestamptz", "2024-01-02T03:00:00Z", "2024-01-02t03:00:00z"),
    ("timestamp", dt.datetime(2024, 1, 2, 3), dt.datetime(2024, 1, 2, 5, tzinfo=PLUS2)),
    ("timestamp", "2024-01-02T03:00:00+02:00", dt.datetime(2024, 1, 2, 3)),  # offset ignored
    ("date", dt.date(2024, 1, 2), "2024-01-02"),
    ("date", dt.date(2024, 1, 2), dt.datetime(2024, 1, 2, 23, 59)),
    ("date", dt.date(2024, 1, 2), "2024-01-02T23:00:00-05:00"),  # the date as written
    ("date", dt.date(2024, 1, 1), dt.datetime(2024, 1, 2, 1, tzinfo=PLUS2)),
]  # fmt: skip

TWO_KEYS = [
    ("text", "1", "1.0"),
    ("text", 1, True),
    ("text", "a", "a "),
    ("text", "A", "a"),
    ("bigint", 1, True),  # a bool is no number to the server (nor in a key here)
    ("bigint", 1000, "1_000"),  # Python's int() takes it; the server refuses it
    ("bigint", 1, "\u0661"),  # an Arabic-Indic one: the same
    ("integer", 1, "1.0"),  # int4in refuses a decimal point
    ("numeric", 1, True),
    ("numeric", Decimal("1.5"), "1.5x"),
    ("numeric(6,2)", Decimal("1.01"), Decimal("1.02")),
    ("double precision", 0.0, "1e-400"),  # Python reads 0.0; the server refuses it
    ("uuid", U, "urn:uuid:" + U),  # Python's uuid takes it; the server does not
    ("uuid", U, "{" + U),  # an unmatched brace
    ("uuid", U, uuid.UUID(U)),  # psycopg2 cannot send a UUID object: a refused row
    ("uuid", U, U[:8] + "-" + U[9:].replace("-", "") + " "),  # a trailing space
    ("timestamptz", "2024-01-02T03:00:00.123456Z", "2024-01-02T03:00:00.1234567Z"),  # rounded
    ("timestamptz", dt.datetime(2024, 1, 2, 3, tzinfo=dt.UTC), "2024-01-02T23:00:00+20:00"),
    ("char(2)", "ab", "abc"),
    ("citext", "É", "é"),  # beyond ASCII, lower() is the server's locale's
]  # fmt: skip


@pytest.mark.parametrize(("sql_type", "a", "b"), ONE_KEY, ids=repr)
def test_spellings_the_server_stores_as_one_value_share_one_identity(sql_type, a, b):
    same = identity(sql_type)
    assert same(a) == same(b)
    assert hash(same(a)) == hash(same(b))


@pytest.mark.parametrize(("sql_type", "a", "b"), TWO_KEYS, ids=repr)
def test_values_the_server_keeps_apart_or_refuses_never_share_an_identity(sql_type, a, b):
    same = identity(sql_type)
    assert same(a) != same(b)


def test_nan_is_one_identity_as_the_servers_numeric_and_float_orders_make_it():
    assert identity("numeric")(float("nan")) is NAN
    assert identity("double precision")(Decimal("sNaN")) is NAN
    assert identity("real")("NaN") is NAN


@pytest.mark.parametrize(
    "value",
    [None, [1], {"a": 1}, object(), b"1", dt.time(1), "\x00", "\ud800", 10**5000],
    ids=lambda v: type(v).__name__,
)
@pytest.mark.parametrize(
    "sql_type", ["text", "char(2)", "bigint", "numeric(6,2)", "double precision", "uuid",
                 "timestamptz", "timestamp", "date", "inet", "boolean"],
)  # fmt: skip
def test_an_identity_never_raises_and_leaves_what_it_cannot_convert_as_it_is(sql_type, value):
    assert identity(sql_type)(value) is value


def test_a_common_key_is_its_own_identity_at_once():
    assert identity("text")("abc") == "abc"
    assert identity("bigint")(10**12) == 10**12
    assert identity("double precision")(2.5) == 2.5
