"""`migrate` builds the tables and `Loader` writes batches, against a real PostgreSQL."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from worker.database import RowsRefused
from worker.registry import Job
from worker.run.loader import Loader, Written
from worker.store.migrate import migrate, migrations

COLUMNS = {"id": "text", "name": "text", "n": "integer"}


def make_job(**declared: Any) -> Job:
    fields: dict[str, Any] = {
        "name": "items",
        "function": lambda ctx: iter(()),
        "table": "items",
        "columns": COLUMNS,
        "key": ("id",),
        **declared,
    }
    return Job(**fields)


def migrated(conn: Any, *jobs: Job) -> dict[str, list[str]]:
    """What `migrate` did: Nightshift's own migrations, and the job tables it changed."""
    with conn, conn.cursor() as cur:
        done = migrate(cur, jobs)
    assert done.refused == [] and done.job_migrations == []
    return {"migrations": done.migrations, "tables": done.tables}


def write(conn: Any, job: Job, rows: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
    """One batch in its own committed transaction, as a run writes it: (written, changed)."""
    with conn, conn.cursor() as cur:
        written = Loader(job).write_rows(cur, rows)
    assert written.refused == []
    return written.rows, written.changed


def write_isolating(conn: Any, job: Job, rows: Sequence[Any]) -> Written:
    """One batch written with refused rows set apart, committed."""
    with conn, conn.cursor() as cur:
        return Loader(job).write_rows(cur, rows, isolate=True)


def primary_key(db, table: str) -> str:
    return db.scalar(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = %s::regclass AND contype = 'p'",
        (table,),
    )


def versions(db, table: str = "items") -> dict[str, str]:
    """Each row's xmin: it changes whenever the row is rewritten, even with equal values."""
    return dict(db.query(f"SELECT id, xmin::text FROM {table}"))


ALL_MIGRATIONS = [f"{version:04d}_{name}" for version, name, _ in migrations()]


# -- migrate -----------------------------------------------------------------------------------


def test_migrate_creates_the_bookkeeping_schema_and_the_job_table_keyed_on_its_key(conn, db):
    assert migrated(conn, make_job()) == {
        "migrations": ALL_MIGRATIONS,
        "tables": ["public.items"],
    }
    assert db.query(
        "SELECT table_name FROM information_schema.tables"
        " WHERE table_schema = 'nightshift' ORDER BY table_name"
    ) == [
        ("job_migrations",),
        ("job_state",),
        ("jobs",),
        ("rejects",),
        ("runs",),
        ("schema_migrations",),
        ("triggers",),
    ]
    assert db.query("SELECT version, name FROM nightshift.schema_migrations ORDER BY 1") == [
        (version, name) for version, name, _ in migrations()
    ]
    assert db.query(
        "SELECT column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = 'public' AND table_name = 'items' ORDER BY ordinal_position"
    ) == [("id", "text"), ("name", "text"), ("n", "integer")]
    assert primary_key(db, "items") == "PRIMARY KEY (id)"
    assert db.scalar("SELECT tableowner FROM pg_tables WHERE tablename = 'items'") == (
        "nightshift_app"
    )


def test_migrate_a_second_time_applies_nothing(conn, db):
    migrated(conn, make_job())

    assert migrated(conn, make_job()) == {"migrations": [], "tables": []}
    assert db.scalar("SELECT count(*) FROM nightshift.schema_migrations") == len(migrations())


def test_migrate_creates_a_job_table_in_its_own_schema(conn, db):
    assert migrated(conn, make_job(schema="sales", table="orders")) == {
        "migrations": ALL_MIGRATIONS,
        "tables": ["sales.orders"],
    }
    assert primary_key(db, "sales.orders") == "PRIMARY KEY (id)"


def test_a_column_added_to_the_declaration_is_added_to_the_table_keeping_its_rows(conn, db):
    migrated(conn, make_job())
    write(conn, make_job(), [{"id": "a", "name": "alpha", "n": 1}])
    grown = make_job(columns={**COLUMNS, "tags": "jsonb", "seen_at": "timestamptz"})

    assert migrated(conn, grown) == {"migrations": [], "tables": ["public.items"]}
    assert db.query(
        "SELECT column_name, data_type FROM information_schema.columns"
        " WHERE table_name = 'items' ORDER BY ordinal_position"
    ) == [
        ("id", "text"),
        ("name", "text"),
        ("n", "integer"),
        ("tags", "jsonb"),
        ("seen_at", "timestamp with time zone"),
    ]
    assert db.query("SELECT id, name, n, tags, seen_at FROM items") == [
        ("a", "alpha", 1, None, None)
    ]
    assert migrated(conn, grown) == {"migrations": [], "tables": []}


def test_a_composite_key_becomes_a_composite_primary_key(conn, db):
    migrated(conn, make_job(columns={"region": "text", **COLUMNS}, key=("region", "id")))

    assert primary_key(db, "items") == "PRIMARY KEY (region, id)"


# -- Loader: upsert ----------------------------------------------------------------------------


def test_upsert_inserts_new_rows_and_reports_them_written_and_changed(conn, db):
    job = make_job()
    migrated(conn, job)

    assert write(conn, job, [{"id": "a", "name": "alpha", "n": 1}, {"id": "b"}]) == (2, 2)
    assert db.query("SELECT id, name, n FROM items ORDER BY id") == [
        ("a", "alpha", 1),
        ("b", None, None),
    ]


def test_upsert_of_identical_rows_writes_them_but_changes_nothing(conn, db):
    job = make_job()
    migrated(conn, job)
    rows = [{"id": "a", "name": "alpha", "n": 1}, {"id": "b", "name": None, "n": None}]
    write(conn, job, rows)
    before = versions(db)

    assert write(conn, job, rows) == (2, 0)
    assert versions(db) == before


def test_upsert_updates_only_the_rows_whose_values_changed(conn, db):
    job = make_job()
    migrated(conn, job)
    write(conn, job, [{"id": "a", "name": "alpha", "n": 1}, {"id": "b", "name": "beta", "n": 2}])
    before = versions(db)

    assert write(conn, job, [{"id": "a", "name": "alpha", "n": 1}, {"id": "b", "n": 3}]) == (2, 1)
    assert db.query("SELECT id, name, n FROM items ORDER BY id") == [
        ("a", "alpha", 1),
        ("b", None, 3),
    ]
    assert versions(db)["a"] == before["a"]
    assert versions(db)["b"] != before["b"]


def test_upsert_of_a_batch_holding_one_key_twice_keeps_the_later_row(conn, db):
    job = make_job()
    migrated(conn, job)
    rows = [
        {"id": "a", "name": "first", "n": 1},
        {"id": "b", "name": "other", "n": 2},
        {"id": "a", "name": "second", "n": 3},
    ]

    assert write(conn, job, rows) == (2, 2)
    assert db.query("SELECT id, name, n FROM items ORDER BY id") == [
        ("a", "second", 3),
        ("b", "other", 2),
    ]


def test_upsert_with_a_single_non_key_column_compares_it_as_a_row(conn, db):
    job = make_job(columns={"id": "text", "name": "text"})
    migrated(conn, job)

    assert write(conn, job, [{"id": "a", "name": "alpha"}]) == (1, 1)
    assert write(conn, job, [{"id": "a", "name": "alpha"}]) == (1, 0)
    assert write(conn, job, [{"id": "a", "name": "ALPHA"}]) == (1, 1)
    assert write(conn, job, [{"id": "a", "name": None}]) == (1, 1)
    assert write(conn, job, [{"id": "a", "name": None}]) == (1, 0)
    assert db.query("SELECT id, name FROM items") == [("a", None)]


def test_a_table_of_key_columns_only_inserts_a_new_key_once(conn, db):
    job = make_job(columns={"id": "text"})
    migrated(conn, job)

    assert write(conn, job, [{"id": "a"}, {"id": "b"}]) == (2, 2)
    assert write(conn, job, [{"id": "a"}, {"id": "c"}]) == (2, 1)
    assert db.query("SELECT id FROM items ORDER BY id") == [("a",), ("b",), ("c",)]


def test_a_composite_key_upserts_on_all_its_columns(conn, db):
    job = make_job(columns={"region": "text", **COLUMNS}, key=("region", "id"))
    migrated(conn, job)
    write(
        conn,
        job,
        [
            {"region": "eu", "id": "1", "name": "paris"},
            {"region": "us", "id": "1", "name": "boston"},
        ],
    )

    assert write(conn, job, [{"region": "eu", "id": "1", "name": "lyon"}]) == (1, 1)
    assert db.query("SELECT region, id, name FROM items ORDER BY region") == [
        ("eu", "1", "lyon"),
        ("us", "1", "boston"),
    ]


# -- Loader: append ----------------------------------------------------------------------------


def test_append_of_a_batch_holding_one_key_twice_keeps_the_first_row(conn, db):
    job = make_job(mode="append")
    migrated(conn, job)

    assert write(conn, job, [{"id": "a", "name": "first"}, {"id": "a", "name": "second"}]) == (
        1,
        1,
    )
    assert db.query("SELECT id, name FROM items") == [("a", "first")]


def test_append_leaves_an_existing_row_untouched_on_a_rerun(conn, db):
    job = make_job(mode="append")
    migrated(conn, job)
    write(conn, job, [{"id": "a", "name": "first", "n": 1}])
    before = versions(db)

    assert write(conn, job, [{"id": "a", "name": "changed", "n": 2}, {"id": "b"}]) == (2, 1)
    assert db.query("SELECT id, name, n FROM items ORDER BY id") == [
        ("a", "first", 1),
        ("b", None, None),
    ]
    assert versions(db)["a"] == before["a"]


# -- Loader: values ----------------------------------------------------------------------------


def test_jsonb_columns_take_dicts_and_lists_and_unchanged_json_is_not_rewritten(conn, db):
    job = make_job(columns={"id": "text", "doc": "jsonb", "tags": "JSONB"})
    migrated(conn, job)
    rows = [
        {"id": "a", "doc": {"mag": 4.5, "nested": {"felt": [1, 2]}}, "tags": ["eq", "ca"]},
        {"id": "b", "doc": None, "tags": []},
    ]

    assert write(conn, job, rows) == (2, 2)
    assert db.query("SELECT id, doc, tags FROM items ORDER BY id") == [
        ("a", {"mag": 4.5, "nested": {"felt": [1, 2]}}, ["eq", "ca"]),
        ("b", None, []),
    ]
    assert write(conn, job, rows) == (2, 0)


def test_a_json_column_upserts_like_jsonb(conn, db):
    job = make_job(columns={"id": "text", "doc": "json"})
    migrated(conn, job)

    assert write(conn, job, [{"id": "a", "doc": {"k": 1}}]) == (1, 1)
    assert db.query("SELECT id, doc FROM items") == [("a", {"k": 1})]


def test_an_empty_batch_writes_nothing(conn):
    job = make_job()
    migrated(conn, job)

    assert write(conn, job, []) == (0, 0)


# -- Loader: refused rows ----------------------------------------------------------------------


def test_a_row_with_an_undeclared_column_is_refused_naming_it_and_the_rest_is_written(conn, db):
    job = make_job()
    migrated(conn, job)
    rows = [{"id": "a", "name": "alpha"}, {"id": "b", "colour": "red", "size": 3}]

    written = write_isolating(conn, job, rows)

    assert [(r.row, r.error, r.by_database) for r in written.refused] == [
        (rows[1], "row has undeclared column(s) colour, size", False)
    ]
    assert db.query("SELECT id FROM items") == [("a",)]


@pytest.mark.parametrize("row", [{"id": None, "name": "x"}, {"name": "x"}])
def test_a_row_without_its_key_is_refused(conn, db, row):
    job = make_job()
    migrated(conn, job)

    written = write_isolating(conn, job, [row])

    assert [r.error for r in written.refused] == ["row has no value for key id"]
    assert db.scalar("SELECT count(*) FROM items") == 0


def test_a_row_missing_part_of_a_composite_key_is_refused(conn):
    job = make_job(columns={"region": "text", **COLUMNS}, key=("region", "id"))
    migrated(conn, job)

    written = write_isolating(conn, job, [{"region": "eu", "id": None}])

    assert [r.error for r in written.refused] == ["row has no value for key region, id"]


@pytest.mark.parametrize("key", [{"a": 1}, [1, 2]], ids=["dict", "list"])
def test_a_key_that_is_not_a_plain_value_is_refused(conn, key):
    job = make_job()
    migrated(conn, job)

    written = write_isolating(conn, job, [{"id": key}, {"id": "fine"}])

    assert [r.error for r in written.refused] == [
        f"key id must be a plain value, not {type(key).__name__}"
    ]
    assert written.rows == 1


def test_rows_the_database_refuses_are_isolated_and_the_others_commit(conn, db):
    job = make_job()
    migrated(conn, job)
    rows = [{"id": f"r{i}", "n": i} for i in range(40)]
    rows[7]["n"] = "seven"  # 22P02
    rows[21]["name"] = "nul\x00inside"  # the driver refuses NUL in a string
    rows[33]["n"] = 2**40  # 22003 out of range for integer

    written = write_isolating(conn, job, rows)

    assert [(r.row["id"], r.by_database) for r in written.refused] == [
        ("r7", True),
        ("r21", True),
        ("r33", True),
    ]
    errors = [r.error for r in written.refused]
    assert errors[0].startswith("22P02 invalid input syntax for type integer")
    assert "NUL" in errors[1]
    assert errors[2].startswith("22003")
    assert (written.rows, written.changed) == (37, 37)
    assert db.scalar("SELECT count(*) FROM items") == 37


def test_without_isolation_a_refusal_raises_rows_refused(conn):
    job = make_job()
    migrated(conn, job)

    with pytest.raises(RowsRefused) as raised, conn, conn.cursor() as cur:
        Loader(job).write_rows(cur, [{"id": "a", "n": "x"}])

    assert str(raised.value).startswith("22P02 invalid input syntax for type integer")


# -- Loader: newer wins ------------------------------------------------------------------------


def test_a_version_column_keeps_the_newer_stored_row(conn, db):
    job = make_job(columns={**COLUMNS, "v": "timestamptz"}, version="v")
    migrated(conn, job)
    write(conn, job, [{"id": "a", "name": "new", "v": "2024-01-02T00:00:00Z"}])

    assert write(conn, job, [{"id": "a", "name": "old", "v": "2024-01-01T00:00:00Z"}]) == (1, 0)
    assert write(conn, job, [{"id": "a", "name": "same", "v": "2024-01-02T00:00:00+00:00"}]) == (
        1,
        1,
    )
    assert db.query("SELECT name FROM items") == [("same",)]


def test_within_a_batch_the_greatest_version_wins_whatever_the_order(conn, db):
    job = make_job(columns={**COLUMNS, "v": "integer"}, version="v")
    migrated(conn, job)

    write(conn, job, [{"id": "a", "name": "v3", "v": 3}, {"id": "a", "name": "v1", "v": "1"}])

    assert db.query("SELECT name, v FROM items") == [("v3", 3)]


def test_an_unknown_version_never_replaces_a_known_one(conn, db):
    job = make_job(columns={**COLUMNS, "v": "integer"}, version="v")
    migrated(conn, job)
    write(conn, job, [{"id": "a", "name": "known", "v": 2}])

    write(conn, job, [{"id": "a", "name": "unknown", "v": None}])

    assert db.query("SELECT name FROM items") == [("known",)]


def test_a_version_that_cannot_be_compared_is_refused(conn):
    job = make_job(columns={**COLUMNS, "v": "date"}, version="v")
    migrated(conn, job)

    written = write_isolating(conn, job, [{"id": "a", "v": "not a date"}])

    assert [r.error for r in written.refused] == [
        "version column 'v': 'not a date' is not a valid date"
    ]
