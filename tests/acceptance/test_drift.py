"""Declaration drift: `check` lists every way a job's table differs from what the job declares,
`migrate` refuses (and applies nothing) over what only a migration file can change, and the
project's migration files (MIGRATIONS_DIR) change it, each applied once.

The job (tests/drift_jobs/weather.py) takes its declaration from the environment, so a test
migrates with one declaration and then changes it, as a deploy does.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import assert_no_secrets, log_lines

COLUMNS = {"station": "text", "day": "date", "temperature": "integer"}
SAME = "tables:    every job's table matches its declaration"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """The project's migration files for this test (MIGRATIONS_DIR), empty at first."""
    path = tmp_path / "migrations"
    path.mkdir()
    return path


def declared(folder: Path, columns: dict[str, str], **declaration: str) -> dict[str, str]:
    """The environment of a deploy whose weather job declares `columns` (and key, version)."""
    env = {
        "JOBS_PACKAGE": "tests.drift_jobs",
        "MIGRATIONS_DIR": str(folder),
        "DRIFT_COLUMNS": json.dumps(columns),
    }
    return env | {f"DRIFT_{name.upper()}": value for name, value in declaration.items()}


def table_lines(result) -> list[str]:
    """What `check` says about the tables: its output from the `tables:` line on."""
    lines = result.stdout.splitlines()
    return lines[[line.split(":")[0] for line in lines].index("tables") :]


def said(result) -> list[str]:
    """stderr without the log lines: what the command told the operator."""
    return [line for line in result.stderr.splitlines() if not line.startswith("{")]


def columns(db) -> list[tuple[str, str, bool]]:
    return db.query(
        "SELECT attname, format_type(atttypid, atttypmod), attnotnull FROM pg_attribute"
        " WHERE attrelid = 'public.weather'::regclass AND attnum > 0 AND NOT attisdropped"
        " ORDER BY attnum"
    )


def primary_key(db) -> str | None:
    return db.scalar(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = 'public.weather'::regclass AND contype = 'p'"
    )


def statements(result) -> list[str]:
    """The statements `migrate` suggests for a migration file."""
    return [line.strip() for line in said(result) if line.startswith("  ALTER TABLE")]


# -- a column's type -------------------------------------------------------------------------


def test_a_changed_column_type_is_refused_until_a_migration_file_changes_it_once(cli, db, folder):
    as_integer = declared(folder, COLUMNS)
    assert cli("migrate", **as_integer).returncode == 0
    row = {"station": "OSL", "day": "2024-05-01", "temperature": 21}
    ran = cli("run", "weather", **as_integer, DRIFT_ROWS=json.dumps([row]))
    assert ran.returncode == 0, ran.stderr
    as_text = declared(folder, {**COLUMNS, "temperature": "text", "note": "text"})

    checked = cli("check", **as_text)
    assert checked.returncode == 1
    assert table_lines(checked) == [
        "tables:    2 differences between the jobs' declarations and their tables",
        "  job weather, table public.weather, column temperature: declared text, actual integer",
        "  job weather, table public.weather, column note: declared text,"
        " missing from the table (migrate adds it)",
        "a type or a key that differs needs a migration file: migrate suggests one",
    ]

    refused = cli("migrate", **as_text)
    alter = (
        "ALTER TABLE IF EXISTS public.weather"
        " ALTER COLUMN temperature TYPE text USING temperature::text;"
    )
    assert refused.returncode == 1
    assert said(refused) == [
        "error: migrate refused, nothing applied: 1 difference between the jobs' declarations"
        " and their tables that a migration file must resolve",
        "error: job weather, table public.weather, column temperature: declared text,"
        " actual integer",
        f"to resolve it, write {folder}/0001_weather_temperature_to_text.sql holding:",
        f"  {alter}",
        "then run migrate again: it applies each new file there once, in order, then compares.",
    ]
    # Nothing applied: neither the type nor the new column (missing columns wait too).
    assert columns(db) == [("station", "text", True), ("day", "date", True),
                           ("temperature", "integer", False)]  # fmt: skip
    assert db.scalar("SELECT count(*) FROM nightshift.job_migrations") == 0

    # The suggested file, plus a statement that shows whether it ran twice.
    update = "UPDATE public.weather SET temperature = temperature || ' C';"
    (folder / "0001_weather_temperature_to_text.sql").write_text(f"{alter}\n{update}\n")
    migrated = cli("migrate", **as_text)
    assert migrated.returncode == 0, migrated.stderr
    assert f"migration files applied: 0001_weather_temperature_to_text ({folder}/)" in (
        migrated.stdout.splitlines()
    )
    assert "tables created or extended: public.weather" in migrated.stdout.splitlines()
    assert columns(db) == [("station", "text", True), ("day", "date", True),
                           ("temperature", "text", False), ("note", "text", False)]  # fmt: skip
    assert db.query("SELECT temperature FROM weather") == [("21 C",)]

    again = cli("migrate", **as_text)
    assert again.returncode == 0, again.stderr
    assert f"migration files applied: none ({folder}/)" in again.stdout.splitlines()
    assert db.query("SELECT temperature FROM weather") == [("21 C",)]
    assert db.query("SELECT version, name FROM nightshift.job_migrations") == [
        (1, "weather_temperature_to_text")
    ]

    rechecked = cli("check", **as_text)
    assert rechecked.returncode == 0, rechecked.stdout + rechecked.stderr
    assert f"files:     1/1 migration files in {folder}/ applied" in rechecked.stdout.splitlines()
    assert table_lines(rechecked) == [SAME]


def test_a_refused_migrate_undoes_the_migration_files_it_ran_too(cli, db, folder):
    assert cli("migrate", **declared(folder, COLUMNS)).returncode == 0
    other = "ALTER TABLE IF EXISTS public.weather ADD COLUMN source text;"  # not the fix
    (folder / "0001_weather_source.sql").write_text(other)
    as_text = declared(folder, {**COLUMNS, "temperature": "text"})

    refused = cli("migrate", **as_text)

    assert refused.returncode == 1
    assert f"to resolve it, write {folder}/0002_weather_temperature_to_text.sql holding:" in (
        said(refused)
    )
    assert [name for name, *_ in columns(db)] == ["station", "day", "temperature"]
    assert db.scalar("SELECT count(*) FROM nightshift.job_migrations") == 0
    assert (
        f"files:     0/1 migration files in {folder}/ applied;"
        " waiting: 0001_weather_source.sql (run migrate)"
    ) in cli("check", **as_text).stdout.splitlines()


def test_on_a_fresh_database_the_migration_file_finds_no_table_and_migrate_creates_it(
    cli, db, folder
):
    alter = "ALTER TABLE IF EXISTS public.weather ALTER COLUMN temperature TYPE text;"
    (folder / "0001_weather_temperature_to_text.sql").write_text(alter)
    as_text = declared(folder, {**COLUMNS, "temperature": "text"})

    checked = cli("check", **as_text)
    assert checked.returncode == 0, checked.stderr
    assert (
        f"files:     0/1 migration files in {folder}/ applied;"
        " waiting: 0001_weather_temperature_to_text.sql (run migrate)"
    ) in checked.stdout.splitlines()
    assert table_lines(checked) == [
        "tables:    no differences; 1 not created yet (migrate creates them)",
        "  job weather, table public.weather: not created yet: run migrate",
    ]

    migrated = cli("migrate", **as_text)
    assert migrated.returncode == 0, migrated.stderr
    assert ("temperature", "text", False) in columns(db)
    assert table_lines(cli("check", **as_text)) == [SAME]


def test_type_aliases_and_spellings_are_the_same_type(cli, db, folder):
    one_way = {
        "station": "varchar(10)",
        "day": "date",
        "temperature": "int",
        "reading": "int4",
        "at": "timestamptz",
        "price": "numeric(12,2)",
        "ok": "bool",
        "ratio": "float8",
        "grade": "char",
        "tags": "text[]",
        "span": "interval day to second",
    }
    another = {
        "station": "character varying (10)",
        "day": "DATE",
        "temperature": "integer",
        "reading": "int",
        "at": "timestamp with time zone",
        "price": "decimal(12, 2)",
        "ok": "boolean",
        "ratio": "double precision",
        "grade": "character(1)",
        "tags": "text []",
        "span": "interval day to second",
    }
    assert cli("migrate", **declared(folder, one_way)).returncode == 0

    for spelling in (one_way, another):
        checked = cli("check", **declared(folder, spelling))
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert table_lines(checked) == [SAME]
    migrated = cli("migrate", **declared(folder, another))
    assert migrated.returncode == 0, migrated.stderr
    assert "tables created or extended: none needed" in migrated.stdout.splitlines()


def test_a_type_modifier_or_a_time_zone_is_part_of_the_type(cli, db, folder):
    created = {**COLUMNS, "name": "varchar(10)", "price": "numeric(12,2)", "at": "timestamptz"}
    assert cli("migrate", **declared(folder, created)).returncode == 0
    changed = {**created, "name": "varchar(20)", "price": "numeric(12,3)", "at": "timestamp"}

    checked = cli("check", **declared(folder, changed))

    assert checked.returncode == 1
    where = "  job weather, table public.weather, column"
    assert table_lines(checked)[1:4] == [
        f"{where} name: declared varchar(20) (character varying(20)), actual character varying(10)",
        f"{where} price: declared numeric(12,3), actual numeric(12,2)",
        f"{where} at: declared timestamp (timestamp without time zone),"
        " actual timestamp with time zone",
    ]


# -- the key ---------------------------------------------------------------------------------


def test_a_primary_key_other_than_the_declared_key_is_refused_until_a_file_changes_it(
    cli, db, folder
):
    assert cli("migrate", **declared(folder, COLUMNS)).returncode == 0
    by_station = declared(folder, COLUMNS, key="station")

    checked = cli("check", **by_station)
    assert checked.returncode == 1
    assert table_lines(checked)[:2] == [
        "tables:    1 difference between the jobs' declarations and their tables",
        "  job weather, table public.weather: primary key (station, day), declared key (station)",
    ]
    refused = cli("migrate", **by_station)
    assert refused.returncode == 1
    assert said(refused)[1] == (
        "error: job weather, table public.weather: primary key (station, day),"
        " declared key (station)"
    )
    assert statements(refused) == [
        "ALTER TABLE IF EXISTS public.weather DROP CONSTRAINT weather_pkey,"
        " ADD PRIMARY KEY (station);"
    ]
    assert f"write {folder}/0001_weather_key.sql holding:" in said(refused)[2]
    assert primary_key(db) == "PRIMARY KEY (station, day)"

    (folder / "0001_weather_key.sql").write_text("\n".join(statements(refused)))
    assert cli("migrate", **by_station).returncode == 0
    assert primary_key(db) == "PRIMARY KEY (station)"
    assert table_lines(cli("check", **by_station)) == [SAME]


def test_a_table_without_a_key_the_upsert_can_use_is_refused(cli, db, folder):
    db.query(
        "CREATE TABLE public.weather (station text, day date, temperature integer);"
        " ALTER TABLE public.weather OWNER TO nightshift_app"
    )
    env = declared(folder, COLUMNS)
    where = "job weather, table public.weather"

    checked = cli("check", **env)
    assert checked.returncode == 1
    assert table_lines(checked) == [
        "tables:    3 differences between the jobs' declarations and their tables",
        f"  {where}, column station (key): may be null; a key column must be NOT NULL",
        f"  {where}, column day (key): may be null; a key column must be NOT NULL",
        f"  {where}: no primary key or unique constraint on the declared key (station, day),"
        " which the upsert needs",
        "a type or a key that differs needs a migration file: migrate suggests one",
    ]
    refused = cli("migrate", **env)
    assert refused.returncode == 1
    assert statements(refused) == [
        "ALTER TABLE IF EXISTS public.weather ALTER COLUMN station SET NOT NULL;",
        "ALTER TABLE IF EXISTS public.weather ALTER COLUMN day SET NOT NULL;",
        "ALTER TABLE IF EXISTS public.weather ADD PRIMARY KEY (station, day);",
    ]
    assert f"write {folder}/0001_match_job_declarations.sql holding:" in said(refused)[4]

    (folder / "0001_match_job_declarations.sql").write_text("\n".join(statements(refused)))
    assert cli("migrate", **env).returncode == 0
    assert primary_key(db) == "PRIMARY KEY (station, day)"
    assert table_lines(cli("check", **env)) == [SAME]


def test_a_unique_index_on_the_key_serves_the_upsert_but_a_nullable_key_column_is_drift(
    cli, db, folder
):
    db.query(
        "CREATE TABLE public.weather (station text NOT NULL, day date, temperature integer);"
        " CREATE UNIQUE INDEX weather_key ON public.weather (day, station);"
        " ALTER TABLE public.weather OWNER TO nightshift_app"
    )

    checked = cli("check", **declared(folder, COLUMNS))

    assert checked.returncode == 1
    assert table_lines(checked)[:2] == [
        "tables:    1 difference between the jobs' declarations and their tables",
        "  job weather, table public.weather, column day (key):"
        " may be null; a key column must be NOT NULL",
    ]


# -- the version column ----------------------------------------------------------------------


def test_the_version_column_of_another_type_or_missing_is_drift(cli, db, folder):
    versioned = {**COLUMNS, "updated_at": "timestamptz"}
    assert cli("migrate", **declared(folder, versioned, version="updated_at")).returncode == 0
    where = "  job weather, table public.weather, column"

    as_date = declared(folder, {**versioned, "updated_at": "date"}, version="updated_at")
    checked = cli("check", **as_date)
    assert checked.returncode == 1
    assert table_lines(checked)[1] == (
        f"{where} updated_at (version): declared date, actual timestamp with time zone"
    )
    assert cli("migrate", **as_date).returncode == 1

    moved = declared(folder, {**versioned, "revised_at": "timestamptz"}, version="revised_at")
    checked = cli("check", **moved)
    assert checked.returncode == 1
    assert table_lines(checked)[1:] == [
        f"{where} revised_at (version): declared timestamptz, missing from the table"
        " (migrate adds it)"
    ]
    migrated = cli("migrate", **moved)
    assert migrated.returncode == 0, migrated.stderr
    assert "tables created or extended: public.weather" in migrated.stdout.splitlines()
    assert table_lines(cli("check", **moved)) == [SAME]


# -- the worker, and the files themselves ----------------------------------------------------


def test_the_worker_does_not_start_over_a_refused_difference_and_says_why_in_one_line(
    cli, db, folder
):
    assert cli("migrate", **declared(folder, COLUMNS)).returncode == 0
    process = cli.spawn(**declared(folder, {**COLUMNS, "temperature": "text"}))

    stdout, stderr = process.communicate(timeout=60)

    assert process.returncode == 1
    assert_no_secrets(stdout + stderr, cli.env["DATABASE_URL"])
    assert "Traceback" not in stdout + stderr
    logs = log_lines(stdout)
    refused = [line for line in logs if line["event"] == "migrate_refused"]
    assert [(line["level"], line["error"], line["fix"], line["file"]) for line in refused] == [
        (
            "error",
            "job weather, table public.weather, column temperature: declared text, actual integer",
            "ALTER TABLE IF EXISTS public.weather"
            " ALTER COLUMN temperature TYPE text USING temperature::text;",
            f"{folder}/0001_weather_temperature_to_text.sql",
        )
    ]
    assert [line["event"] for line in logs][-1] == "worker_stopped"
    assert not [line for line in logs if line["event"] in ("worker_started", "job_scheduled")]
    assert ("temperature", "integer", False) in columns(db)


def test_a_migration_file_named_otherwise_is_refused_naming_it(cli, db, folder):
    (folder / "1_fix.sql").write_text("SELECT 1;")

    result = cli("migrate", **declared(folder, COLUMNS))

    assert result.returncode == 1
    assert said(result) == [
        f"error: {folder}/1_fix.sql: a migration file is named NNNN_name.sql"
        " (four digits, an underscore, then letters, digits or underscores)"
    ]


def test_a_run_refuses_to_load_into_a_table_that_drifted_from_its_declaration(cli, db, folder):
    as_integer = declared(folder, COLUMNS)
    assert cli("migrate", **as_integer).returncode == 0
    row = {"station": "OSL", "day": "2024-05-01", "temperature": "21"}

    ran = cli(
        "run",
        "weather",
        **declared(folder, {**COLUMNS, "temperature": "text"}),
        DRIFT_ROWS=json.dumps([row]),
    )

    assert ran.returncode == 1
    [finished] = ran.events("job_finished")
    assert finished["status"] == "failed"
    assert finished["error"] == (
        "load: job weather, table public.weather, column temperature: declared text,"
        " actual integer (see `python -m worker migrate`)"
    )
    assert "Traceback" not in ran.stdout + ran.stderr
    assert db.scalar("SELECT count(*) FROM weather") == 0
    assert columns(db)[2] == ("temperature", "integer", False)
