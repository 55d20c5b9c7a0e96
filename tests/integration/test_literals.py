"""A batch's VALUES list made by `literals` is byte for byte the one execute_values makes, and
where it cannot be (another encoding, old-style strings, a value it does not know) the batch
is rendered by execute_values itself, against a real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import psycopg2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg2.extensions import register_adapter
from psycopg2.extras import Json

from worker.database import literals, sql
from worker.registry import Job
from worker.run.loader import Loader
from worker.store.migrate import migrate

HOSTILE: list[Any] = [
    None, True, False,
    0, 1, -1, 2**31, -(2**31) - 1, 2**63 - 1, -(2**63), 2**80, -(2**80),
    0.0, -0.0, 1.5, -2.25, 1e300, -1e-300, 5e-324, float("nan"), float("inf"), float("-inf"),
    Decimal("0"), Decimal("1.20"), Decimal("-3E+5"), Decimal("1E-30"), Decimal("-0.00"),
    Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity"),
    "", " ", "it's", "''", "a\\b", "\\'", "'; DROP TABLE x; --", "$$ $tag$", "--", "/*", "?",
    "%s", "%(x)s", "\n\r\t\x0b\x0c", "\x01\x7f", "日本語", "e\u0301", "\U0001f600", "\u2028",
    "E'x'", "U&'d\\0061t'",
    dt.date(2024, 1, 2), dt.date(1, 1, 1), dt.date(9999, 12, 31),
    dt.datetime(2024, 1, 2, 3, 4, 5), dt.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC),
    dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30, seconds=7))),
    dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.timezone(-dt.timedelta(hours=9))),
    dt.datetime.max, dt.datetime.min,
    # Not written by `literals`: psycopg2's own adapter makes them.
    b"\x00\xff'", bytearray(b"ab"), memoryview(b"cd"), dt.time(1, 2, 3),
    dt.timedelta(days=-1, seconds=5), [1, "two", None], (1, 2), Json({"a": "it's"}),
]  # fmt: skip


class _Flag(int):  # a subclass: adapted by psycopg2, not by the exact-class writers
    pass


HOSTILE.append(_Flag(3))


def execute_values_text(conn: Any, rows: Sequence[tuple]) -> bytes:
    """What execute_values puts in a statement for `rows`: one mogrify per row, joined."""
    with conn.cursor() as cur:
        return b",".join(cur.mogrify("(" + ",".join(["%s"] * len(row)) + ")", row) for row in rows)


@pytest.mark.parametrize("value", HOSTILE, ids=repr)
def test_each_value_is_written_as_execute_values_writes_it(conn: Any, value: Any) -> None:
    assert literals.supported(conn)
    assert literals.values_list(conn, [(value,)]) == execute_values_text(conn, [(value,)])


def test_random_rows_are_written_as_execute_values_writes_them(conn: Any) -> None:
    rng = random.Random(20261127)
    alphabet = "ab'\\\"$;-/* \n\t%()éß日\U0001f600\u2028E&U"

    def text() -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))

    def moment() -> dt.datetime:
        offset = dt.timedelta(minutes=rng.randint(-14 * 60, 14 * 60))
        when = dt.datetime(1970, 1, 1) + dt.timedelta(seconds=rng.uniform(-1e10, 1e10))
        return when.replace(tzinfo=dt.timezone(offset)) if rng.random() < 0.7 else when

    makers = [
        text,
        moment,
        lambda: rng.randint(-(2**70), 2**70),
        lambda: rng.uniform(-1e6, 1e6) * 10 ** rng.randint(-300, 300),
        lambda: Decimal(rng.randint(-(10**12), 10**12)).scaleb(rng.randint(-20, 20)),
        lambda: rng.choice([None, True, False]),
        lambda: dt.date.fromordinal(rng.randint(1, 3_652_059)),
    ]
    rows = [tuple(rng.choice(makers)() for _ in range(6)) for _ in range(2000)]
    assert literals.values_list(conn, rows) == execute_values_text(conn, rows)


def test_the_server_reads_back_what_was_rendered(conn: Any) -> None:
    values = ["it's", "a\\b", "日本語", -5, Decimal("-1.50"), 2.5, True, None]
    values += [dt.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC), dt.date(2024, 2, 29)]
    rendered = sql.render_values(conn, [tuple(values)])
    assert rendered is not None
    with conn.cursor() as cur:
        cur.execute(b"SELECT * FROM (VALUES " + rendered.text + b") AS v")
        assert cur.fetchone() == tuple(values)


@pytest.mark.parametrize(
    "value", ["a\x00b", {"a": 1}, uuid.UUID(int=7), object(), "\ud800"], ids=repr
)
def test_a_value_that_cannot_be_sent_renders_nothing(conn: Any, value: Any) -> None:
    """The send then goes through execute_values, which says why (a refused row)."""
    assert sql.render_values(conn, [(1, "fine"), (2, value)]) is None


def _old_style_strings(conn: Any) -> None:
    with conn.cursor() as cur:
        cur.execute("SET standard_conforming_strings = off")


def _latin1(conn: Any) -> None:
    conn.set_client_encoding("LATIN1")  # as psycopg2 learns of it


@pytest.mark.parametrize("change", [_old_style_strings, _latin1], ids=lambda f: f.__name__)
def test_a_session_reading_literals_otherwise_is_rendered_by_execute_values(
    conn: Any, change: Any
) -> None:
    conn.autocommit = True
    change(conn)
    rows = [("it's a\\b", 1, None), ("café", -2, dt.date(2024, 1, 2))]
    assert not literals.supported(conn)
    rendered = sql.render_values(conn, rows)
    assert rendered is not None
    assert rendered.text == execute_values_text(conn, rows)
    with conn.cursor() as cur:
        cur.execute(b"SELECT * FROM (VALUES " + rendered.text + b") AS v")
        assert cur.fetchall() == rows


# -- numbers psycopg2 alone would write as NaN -------------------------------------------------


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        (Decimal("Infinity"), b"'Infinity'::numeric"),
        (Decimal("-Infinity"), b"'-Infinity'::numeric"),
        (Decimal("NaN"), b"'NaN'::numeric"),
        (Decimal("-NaN"), b"'NaN'::numeric"),
        (Decimal("sNaN"), b"'NaN'::numeric"),
        (float("inf"), b"'Infinity'::float"),
        (float("-inf"), b"'-Infinity'::float"),
        (float("nan"), b"'NaN'::float"),
    ],
    ids=repr,
)
def test_nan_and_infinity_are_written_as_themselves_by_both_paths(conn, value, literal):
    assert literals.values_list(conn, [(value,)]) == b"(" + literal + b")"
    assert execute_values_text(conn, [(value,)]) == b"(" + literal + b")"


def test_the_server_reads_back_numeric_infinity_not_nan(conn):
    rendered = sql.render_values(conn, [(Decimal("Infinity"), Decimal("-Infinity"))])
    assert rendered is not None
    with conn.cursor() as cur:
        cur.execute(b"SELECT v.a::text, v.b::text FROM (VALUES " + rendered.text + b") AS v(a, b)")
        assert cur.fetchone() == ("Infinity", "-Infinity")


# -- values that are not what they claim -------------------------------------------------------


class _ClaimsInt:
    """An object claiming to be an int, whose text is SQL."""

    __class__ = property(lambda self: int)  # type: ignore[assignment]

    def __str__(self) -> str:
        return "1) OR (1=1"


def test_an_object_claiming_a_class_is_adapted_by_its_type_and_refused_like_execute_values(conn):
    spoof = _ClaimsInt()
    assert isinstance(spoof, int)  # what __class__ makes it claim
    with pytest.raises(psycopg2.ProgrammingError, match="can't adapt type '_ClaimsInt'"):
        literals.values_list(conn, [(spoof,)])
    with pytest.raises(psycopg2.ProgrammingError, match="can't adapt type '_ClaimsInt'"):
        execute_values_text(conn, [(spoof,)])
    assert sql.render_values(conn, [(spoof,)]) is None  # the send says why: a refused row


class _Money:
    def __init__(self, cents: int) -> None:
        self.cents = cents


class _MoneyAdapter:
    """An adapter whose getquoted() returns str, which psycopg2 accepts (and encodes)."""

    def __init__(self, money: _Money) -> None:
        self.money = money

    def getquoted(self) -> Any:
        if self.money.cents < 0:
            return self.money.cents  # neither bytes nor str: psycopg2 refuses it
        return f"'{self.money.cents / 100:.2f} €'"


register_adapter(_Money, _MoneyAdapter)


def test_an_adapter_returning_str_is_written_as_execute_values_writes_it(conn):
    rows = [(_Money(150), "x"), (_Money(7), None)]
    assert literals.values_list(conn, rows) == execute_values_text(conn, rows)
    assert literals.values_list(conn, rows) == "('1.50 €','x'),('0.07 €',NULL)".encode()


def test_an_adapter_returning_neither_bytes_nor_str_renders_nothing(conn):
    with pytest.raises(ValueError, match="only bytes values expected"):
        execute_values_text(conn, [(_Money(-1),)])
    assert sql.render_values(conn, [(_Money(-1),)]) is None


# -- generated values (hypothesis) -------------------------------------------------------------

_OFFSETS = st.timedeltas(
    min_value=-dt.timedelta(hours=23, minutes=59, seconds=59, microseconds=999999),
    max_value=dt.timedelta(hours=23, minutes=59, seconds=59, microseconds=999999),
).map(dt.timezone)
_HUGE_DECIMALS = st.builds(
    lambda sign, digits, exponent: Decimal((sign, tuple(digits), exponent)),
    st.integers(0, 1),
    st.lists(st.integers(0, 9), min_size=1, max_size=40),
    st.integers(-(10**6), 10**6),
)
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),  # nan, ±inf, -0.0, subnormals included
    st.decimals(),  # NaN, sNaN, ±Infinity included
    _HUGE_DECIMALS,
    st.text(st.characters(codec=None, exclude_categories=())),  # NUL, surrogates, any unicode
    st.text(alphabet="'\\\"$;-/*%()\x00E&U \n"),  # what quoting must survive
    st.dates(),
    st.datetimes(),
    st.datetimes(timezones=_OFFSETS),
)


def _rendering(render: Any) -> tuple[str, Any]:
    """What a rendering gives: its bytes, or that it refused (as render_values sees it)."""
    try:
        return "bytes", render()
    except (psycopg2.Error, ValueError, TypeError):
        return "refused", None


@given(rows=st.lists(st.lists(VALUES, min_size=1, max_size=4).map(tuple), min_size=1, max_size=5))
@settings(max_examples=300)
def test_generated_rows_are_written_as_execute_values_writes_them_byte_for_byte(conn, rows):
    ours = _rendering(lambda: literals.values_list(conn, rows))
    theirs = _rendering(lambda: execute_values_text(conn, rows))
    assert ours == theirs


class _ClaimsStr:
    __class__ = property(lambda self: str)  # type: ignore[assignment]


def test_a_row_holding_an_object_claiming_to_be_a_str_is_refused_not_a_crash(conn, db):
    """The loader counts a str's length towards the batch's bytes: by type, not by claim."""
    job = Job(
        name="claims",
        function=lambda ctx: iter(()),
        table="claims",
        columns={"id": "text", "label": "text"},
        key=("id",),
    )
    with conn, conn.cursor() as cur:
        migrate(cur, [job])
    with conn, conn.cursor() as cur:
        written = Loader(job).write_rows(
            cur, [{"id": "a", "label": _ClaimsStr()}, {"id": "b", "label": "ok"}], isolate=True
        )

    assert [(r.row["id"], r.error) for r in written.refused] == [
        ("a", "can't adapt type '_ClaimsStr'")
    ]
    assert db.query("SELECT id, label FROM claims") == [("b", "ok")]
