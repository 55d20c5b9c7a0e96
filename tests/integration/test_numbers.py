"""NaN and ±Infinity through the loader, against a real PostgreSQL 15: stored as themselves in
a numeric, real or double precision column (never Infinity as NaN), by either rendering path;
refused, with the reason, where the column cannot hold them (numeric(10,2)). (On a server
older than 14, 'Infinity'::numeric is refused the same way: a refused row, never a NaN.)"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from worker.registry import Job
from worker.run.loader import Loader
from worker.store.migrate import migrate

NUMBERS = {"id": "text", "amount": "numeric", "ratio": "double precision", "share": "real"}


def numbers_job(**columns: str) -> Job:
    return Job(
        name="numbers",
        function=lambda ctx: iter(()),
        table="numbers",
        columns={**NUMBERS, **columns},
        key=("id",),
    )


def write(conn: Any, job: Job, rows: list[dict]) -> Any:
    """One batch, as a run writes one with refused rows: under savepoints, committed."""
    with conn, conn.cursor() as cur:
        migrate(cur, [job])
    with conn, conn.cursor() as cur:
        return Loader(job).write_rows(cur, rows, isolate=True)


# -- through the loader ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("Infinity"), "Infinity"),
        (Decimal("-Infinity"), "-Infinity"),
        (Decimal("NaN"), "NaN"),
        (Decimal("sNaN"), "NaN"),
        (float("inf"), "Infinity"),
        (float("-inf"), "-Infinity"),
        (float("nan"), "NaN"),
    ],
    ids=repr,
)
def test_nan_and_infinity_are_stored_as_themselves_in_every_number_column(conn, db, value, text):
    written = write(
        conn, numbers_job(), [{"id": "a", "amount": value, "ratio": value, "share": value}]
    )

    assert (written.rows, written.refused) == (1, [])
    assert db.query("SELECT amount::text, ratio::text, share::text FROM numbers") == [
        (text, text, text)
    ]


def test_a_column_that_cannot_hold_infinity_refuses_the_row_and_keeps_the_others(conn, db):
    job = numbers_job(price="numeric(10,2)")
    rows = [
        {"id": "inf", "price": Decimal("Infinity")},
        {"id": "ok", "price": Decimal("9.99")},
        {"id": "float-inf", "price": float("-inf")},
    ]

    written = write(conn, job, rows)

    assert written.rows == 1
    assert [(r.row["id"], r.error, r.by_database) for r in written.refused] == [
        ("inf", "22003 numeric field overflow", True),
        ("float-inf", "22003 numeric field overflow", True),
    ]
    assert db.query("SELECT id, price::text FROM numbers") == [("ok", "9.99")]


def test_infinity_is_never_written_as_nan_by_either_path(conn, db):
    """The one-statement path (literals) and execute_values (a value literals does not write,
    here a bytes value in the same batch) store the same Infinity."""
    job = numbers_job(raw="bytea")
    rows = [{"id": "literals", "amount": Decimal("-Infinity")}]
    rows_psycopg2 = [{"id": "execute_values", "amount": Decimal("-Infinity"), "raw": b"\x00"}]
    write(conn, job, rows)
    write(conn, job, rows_psycopg2)

    assert db.query("SELECT id, amount::text FROM numbers ORDER BY id") == [
        ("execute_values", "-Infinity"),
        ("literals", "-Infinity"),
    ]
