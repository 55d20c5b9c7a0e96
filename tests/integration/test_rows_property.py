"""Generated rows through a real run (worker.run.run.Run, in this process, against a real
PostgreSQL 15): keys spelled several ways, NaN and ±Infinity in the cursor, the version and
plain number columns, values a column cannot hold, NUL and lone surrogates in text.

The invariant: every row is stored with the values PostgreSQL stores for it from plain
execute_values, or refused and kept in nightshift.rejects with its reason, or superseded by a
row of the same key (as the table compares keys) as the job's mode says; the run succeeds,
no run is left `running`, nothing is logged with a traceback, and the saved cursor is the
greatest finite one. What to expect is worked out here from the server's own reading of each
row alone and from the documented rules (per batch: the greater version, then the later row in
upsert mode, the first in append mode), not from the loader's code.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg2
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg2.extras import execute_values
from structlog.testing import capture_logs

import worker.database.adapters  # noqa: F401  (the Decimal adapter runs send with)
from config import Settings
from tests.integration.test_key_identity import (
    _integer_spellings,
    _moment_spellings,
    _number_spellings,
    _uuid_spellings,
)
from worker.registry import Job
from worker.run.request import RunRequest
from worker.run.run import Run
from worker.service.shutdown import Shutdown

NOT_FINITE = [
    float("nan"), float("inf"), float("-inf"), Decimal("NaN"), Decimal("sNaN"),
    Decimal("Infinity"), Decimal("-Infinity"), "NaN", " nan", "Infinity", "-inf",
]  # fmt: skip
_UUIDS = ["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "00000000-0000-4000-8000-00000000000f"]
_MOMENTS = [
    dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
    dt.datetime(1999, 12, 31, tzinfo=dt.UTC),
]
# Keys the server stores, each spelled in ways that collide (keys.py's claimed spellings).
KEYS = {
    "text": st.one_of(
        st.integers(-2, 2).flatmap(lambda n: st.sampled_from([n, str(n)])),
        st.sampled_from([True, "true", Decimal("1.50"), "1.50", 1e20, "100000000000000000000"]),
    ),
    "uuid": st.sampled_from(_UUIDS).flatmap(_uuid_spellings),
    "timestamptz": st.sampled_from(_MOMENTS).flatmap(_moment_spellings),
    "bigint": st.integers(-2, 2).flatmap(_integer_spellings),
    "numeric": st.decimals(-2, 2, places=1).flatmap(_number_spellings),
}  # fmt: skip
COLUMNS = {
    "rid": "text",  # which generated row this is
    "n": "numeric",  # the cursor
    "amount": "numeric",
    "ratio": "double precision",
    "price": "numeric(8,2)",  # holds no infinity, nor 1e7
    "note": "text",
}
NUMBERS = st.one_of(
    st.decimals(allow_nan=True, allow_infinity=True, places=None),
    st.floats(),
    st.sampled_from(["1e400", Decimal("1E+200000"), Decimal("-0.00"), 12_345_678]),
)
FINITE_CURSORS = (
    st.decimals(-5, 5, places=2) | st.integers(-5, 5) | st.sampled_from(["1.25", " 3 "])
)
VERSIONS = st.none() | st.sampled_from([0.5, 1.0, 2.0, 2]) | st.sampled_from(NOT_FINITE)


@dataclass
class Case:
    key_type: str
    mode: str
    versioned: bool
    batch_size: int
    rows: list[dict[str, Any]]


@st.composite
def cases(draw: Any) -> Case:
    key_type = draw(st.sampled_from(sorted(KEYS)))
    mode = draw(st.sampled_from(["upsert", "append"]))
    versioned = mode == "upsert" and draw(st.booleans())
    row = st.fixed_dictionaries(
        {"k": KEYS[key_type], "n": FINITE_CURSORS | st.sampled_from(NOT_FINITE)},
        optional={
            "amount": NUMBERS,
            "ratio": NUMBERS,
            "price": NUMBERS,
            "note": st.text(st.characters(codec=None, exclude_categories=()), max_size=6),
            **({"v": VERSIONS} if versioned else {}),
        },
    )
    rows = draw(st.lists(row, min_size=1, max_size=12))
    for i, generated in enumerate(rows):
        generated["rid"] = f"rid-{i}-"
    return Case(key_type, mode, versioned, draw(st.sampled_from([2, 3, 5, 1000])), rows)


def not_finite(value: Any) -> bool:
    if isinstance(value, float | Decimal):
        return not value.is_finite() if isinstance(value, Decimal) else not math.isfinite(value)
    return isinstance(value, str) and value.strip().lower().lstrip("+-") in (
        "nan",
        "inf",
        "infinity",
    )


# -- what the server makes of each row alone --------------------------------------------------


def server_texts(
    conn: Any, columns: dict[str, str], rows: Sequence[tuple], text: str = "{}::text"
) -> list[tuple | None]:
    """Each row sent alone through plain execute_values into a table of `columns`: the text of
    what the server stores (each column through `text`), or None when it refuses the row."""
    names = ", ".join(columns)
    texts: list[tuple | None] = []
    with conn.cursor() as cur:
        cur.execute("SET TIME ZONE 'UTC'")  # as the worker's sessions
        cur.execute(
            "CREATE TEMP TABLE scratch ("
            + ", ".join(f"{name} {kind}" for name, kind in columns.items())
            + ") ON COMMIT DROP"
        )
        back = ", ".join(text.format(name) for name in columns)
        for row in rows:
            cur.execute("SAVEPOINT one")
            try:
                [stored] = execute_values(
                    cur,
                    f"INSERT INTO scratch ({names}) VALUES %s RETURNING {back}",
                    [row],
                    fetch=True,
                )
            except (psycopg2.Error, ValueError, TypeError):
                cur.execute("ROLLBACK TO SAVEPOINT one")
                texts.append(None)
            else:
                texts.append(tuple(stored))
    conn.rollback()
    return texts


def expected(case: Case, keys: list[str], stored: list[tuple | None]) -> tuple[dict, set[int]]:
    """The table (key text -> row index) and the refused rows, by the documented rules."""
    refused = {i for i, row in enumerate(case.rows) if not_finite(row["n"])}
    refused |= {i for i, row in enumerate(case.rows) if case.versioned and not_finite(row.get("v"))}
    admitted = [i for i in range(len(case.rows)) if i not in refused]

    def version(i: int) -> float | None:
        value = case.rows[i].get("v")
        return None if value is None else float(value)

    def replaces(i: int, held: int) -> bool:  # an unknown stored version takes anything
        return version(held) is None or (version(i) is not None and version(i) >= version(held))

    table: dict[str, int] = {}
    for start in range(0, len(admitted), case.batch_size):
        kept: dict[str, int] = {}
        for i in admitted[start : start + case.batch_size]:
            held = kept.get(keys[i])
            if held is not None:
                if (case.versioned and not replaces(i, held)) or case.mode == "append":
                    continue
                del kept[keys[i]]
            kept[keys[i]] = i
        for key, i in kept.items():
            if stored[i] is None:
                refused.add(i)
            elif key not in table or (
                case.mode == "upsert" and (not case.versioned or replaces(i, table[key]))
            ):
                table[key] = i
    return table, refused


# -- the property ------------------------------------------------------------------------------

_jobs = itertools.count()


@settings(max_examples=40)
@given(case=cases())
def test_every_generated_row_is_stored_as_postgresql_stores_it_or_refused_and_kept(conn, db, case):
    columns = {
        "k": case.key_type,
        **COLUMNS,
        **({"v": "double precision"} if case.versioned else {}),
    }
    name = f"rows_{next(_jobs)}"
    rows = case.rows
    job = Job(
        name=name,
        function=lambda ctx: (row for row in rows),
        table=name,
        columns=columns,
        key=("k",),
        mode=case.mode,
        cursor="n",
        version="v" if case.versioned else None,
        max_rejected=1000,
    )
    as_sent = [tuple(row.get(c) for c in columns) for row in rows]
    stored = server_texts(conn, columns, as_sent)
    # A key as the table compares it: numeric 1.0 = 1.00, whose texts differ.
    canonical = "trim_scale({})::text" if case.key_type == "numeric" else "{}::text"
    sent_keys = [(row["k"],) for row in rows]
    keys = [k[0] for k in server_texts(conn, {"k": case.key_type}, sent_keys, canonical)]
    assert None not in keys  # every generated key is one the server stores
    table, refused = expected(case, keys, stored)
    settings_ = Settings.from_env({"DATABASE_URL": db.url, "BATCH_SIZE": str(case.batch_size)})

    with capture_logs() as logs:
        result = Run(settings_, job, RunRequest(), Shutdown()).execute()

    assert (result.status, result.error) == ("succeeded", None)
    assert not [line for line in logs if "exc_info" in line or line["log_level"] == "error"]
    assert db.scalar("SELECT count(*) FROM nightshift.runs WHERE status = 'running'") == 0
    texts = ", ".join(f"{c}::text" for c in columns)
    in_table = {row[1]: row for row in db.query(f"SELECT {texts} FROM {name}")}
    assert in_table == {rows[i]["rid"]: stored[i] for i in table.values()}
    rejects = db.query(
        "SELECT row::text, error FROM nightshift.rejects WHERE job = %s ORDER BY id", (name,)
    )
    rids = [int(re.search(r"rid-(\d+)-", row).group(1)) for row, _ in rejects]
    assert sorted(rids) == sorted(refused)
    assert all(error.strip() for _, error in rejects)
    for rid, (_, error) in zip(rids, rejects, strict=True):
        # The version is checked first, then the cursor.
        if case.versioned and not_finite(rows[rid].get("v")):
            assert error.startswith("version column 'v': ") and "is not a finite number" in error
        elif not_finite(rows[rid]["n"]):
            assert error.startswith("cursor column 'n': ") and "is not a finite number" in error
    assert result.rejected == len(refused)
    # The cursor: the greatest of the rows admitted (a row the server refused counts: its batch
    # committed past it, and it waits in nightshift.rejects).
    saved = db.state(name).get("cursor")
    admitted = [
        Decimal(str(row["n"]).strip())
        for row in rows
        if not not_finite(row["n"]) and not (case.versioned and not_finite(row.get("v")))
    ]
    assert (Decimal(saved) if saved is not None else None) == (max(admitted) if admitted else None)
