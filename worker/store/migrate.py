"""`migrate`: numbered SQL migrations for the bookkeeping schema, then every job's table.

Idempotent and safe to run from several processes at once (a transaction-level advisory lock
serialises them): Heroku's release phase runs it on every deploy, and the worker at start.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from worker.database import sql
from worker.registry import Job
from worker.store import queries
from worker.store.queries import LOCK_NAMESPACE, SQL_DIR

MIGRATIONS_DIR = SQL_DIR / "migrations"
_MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_MIGRATE_LOCK = 0  # second key of the advisory lock, under LOCK_NAMESPACE


def migrations() -> list[tuple[int, str, Path]]:
    found = []
    for path in sorted(MIGRATIONS_DIR.iterdir()):
        match = _MIGRATION_FILE.match(path.name)
        if match:
            found.append((int(match[1]), match[2], path))
    return found


def migrate(cur: Any, jobs: Iterable[Job], every_job: bool = True) -> dict[str, list[str]]:
    """Apply what is missing, inside the caller's transaction. Returns what it did.

    `every_job`: `jobs` is the whole deployed set, so jobs not in it are marked retired.
    """
    jobs = list(jobs)
    cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_NAMESPACE, _MIGRATE_LOCK))
    cur.execute("CREATE SCHEMA IF NOT EXISTS nightshift")
    cur.execute(
        "CREATE TABLE IF NOT EXISTS nightshift.schema_migrations ("
        " version integer PRIMARY KEY, name text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )
    cur.execute("SELECT version FROM nightshift.schema_migrations")
    applied_versions = {row[0] for row in cur.fetchall()}
    applied = []
    for version, name, path in migrations():
        if version in applied_versions:
            continue
        cur.execute(path.read_text())
        cur.execute(
            "INSERT INTO nightshift.schema_migrations (version, name) VALUES (%s, %s)",
            (version, name),
        )
        applied.append(f"{version:04d}_{name}")
    tables = [f"{job.schema}.{job.table}" for job in jobs if ensure_table(cur, job)]
    declared = [{"name": j.name, "schedule": j.schedule, "timezone": j.timezone} for j in jobs]
    queries.sync_jobs(cur, declared, retire_others=every_job)
    return {"migrations": applied, "tables": tables}


def ensure_table(cur: Any, job: Job) -> bool:
    """Create the job's table, or add columns declared since. True when anything changed."""
    table = sql.Identifier(job.schema, job.table)
    cur.execute(
        "SELECT attname FROM pg_attribute"
        " WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped",
        (f'"{job.schema}"."{job.table}"',),
    )
    existing = {row[0] for row in cur.fetchall()}
    if not existing:
        columns = [
            sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(sql_type))
            for name, sql_type in job.columns.items()
        ]
        key = sql.SQL(", ").join(map(sql.Identifier, job.key))
        cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(job.schema)))
        cur.execute(
            sql.SQL("CREATE TABLE {} ({}, PRIMARY KEY ({}))").format(
                table, sql.SQL(", ").join(columns), key
            )
        )
        return True
    missing = [name for name in job.columns if name not in existing]
    for name in missing:
        cur.execute(
            sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(
                table, sql.Identifier(name), sql.SQL(job.columns[name])
            )
        )
    return bool(missing)
