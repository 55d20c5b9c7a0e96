"""`migrate`: numbered SQL migrations for the bookkeeping schema, the project's own migration
files, then every job's table.

Idempotent and safe to run from several processes at once (a transaction-level advisory lock
serialises them): Heroku's release phase runs it on every deploy, and the worker at start.

It creates a job's table and adds the columns declared since, nothing else: a table that
differs from its job's declaration in any other way (`worker.store.drift`) makes it refuse and
undo everything it did. The project's migration files (`MIGRATIONS_DIR`, `NNNN_name.sql`, each
applied once, in order, recorded in `nightshift.job_migrations`) run before that comparison:
they are how a column's type or a table's key changes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from config import ConfigError
from worker.database import sql
from worker.logs import get_logger
from worker.registry import Job
from worker.store import queries
from worker.store.drift import Difference, compare, counted, suggested_file
from worker.store.queries import LOCK_NAMESPACE, SQL_DIR

MIGRATIONS_DIR = SQL_DIR / "migrations"
_MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_JOB_MIGRATION_FILE = re.compile(r"^(\d{4})_(\w+)\.sql$")
_MIGRATE_LOCK = 0  # second key of the advisory lock, under LOCK_NAMESPACE
_SAVEPOINT = "nightshift_migrate"
log = get_logger("nightshift.migrate")


@dataclass(frozen=True)
class Migrated:
    """What `migrate` did. With differences `refused`, it did nothing at all."""

    migrations: list[str] = field(default_factory=list)  # Nightshift's own (sql/migrations/)
    job_migrations: list[str] = field(default_factory=list)  # the project's migration files
    tables: list[str] = field(default_factory=list)  # job tables created or extended
    refused: list[Difference] = field(default_factory=list)  # for a migration file to resolve
    suggested_file: str | None = None  # a path for that file, e.g. migrations/0001_x.sql

    def refusal(self) -> list[str]:
        """Why nothing was applied: a headline, then one line per difference."""
        if not self.refused:
            return []
        headline = f"migrate refused, nothing applied: {counted(self.refused)}"
        return [f"{headline} that a migration file must resolve", *map(str, self.refused)]

    def remedy(self) -> list[str]:
        """How to resolve what was refused: the file to write, and what it would hold."""
        statements = [f"  {d.fix}" for d in self.refused if d.fix]
        lines = []
        if statements:
            lines += [
                f"to resolve {'it' if len(statements) == 1 else 'them'},"
                f" write {self.suggested_file} holding:",
                *statements,
                "then run migrate again: it applies each new file there once, in order, then"
                " compares.",
            ]
        if len(statements) < len(self.refused):  # a type the server does not know
            lines.append("correct the declared types the server does not know in the jobs' code.")
        return lines


def migrations() -> list[tuple[int, str, Path]]:
    found = []
    for path in sorted(MIGRATIONS_DIR.iterdir()):
        match = _MIGRATION_FILE.match(path.name)
        if match:
            found.append((int(match[1]), match[2], path))
    return found


def migrate(
    cur: Any, jobs: Iterable[Job], every_job: bool = True, job_migrations_dir: Path | None = None
) -> Migrated:
    """Apply what is missing, inside the caller's transaction. Returns what it did.

    `every_job`: `jobs` is the whole deployed set, so jobs not in it are marked retired.
    `job_migrations_dir`: the directory of the project's migration files (MIGRATIONS_DIR).
    A difference only a migration file can resolve undoes everything (to a savepoint: the
    caller's transaction goes on) and comes back in `refused`.
    """
    jobs = list(jobs)
    found = job_migration_files(job_migrations_dir)
    if _current(cur, jobs, found):
        _sync_jobs(cur, jobs, every_job)
        return Migrated()
    cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_NAMESPACE, _MIGRATE_LOCK))
    cur.execute(f"SAVEPOINT {_SAVEPOINT}")
    applied = _apply_own_migrations(cur)
    files = _apply_job_migrations(cur, found)
    refused = [difference for difference in compare(cur, jobs) if difference.refused]
    if refused:
        cur.execute(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}")
        cur.execute(f"RELEASE SAVEPOINT {_SAVEPOINT}")
        folder = shown(job_migrations_dir or Path("migrations"))
        versions = [version for version, _, _ in found]
        fixable = [difference for difference in refused if difference.fix]
        suggested = folder + suggested_file(fixable, max(versions, default=0) + 1)
        return Migrated(refused=refused, suggested_file=suggested)
    cur.execute(f"RELEASE SAVEPOINT {_SAVEPOINT}")
    tables = [f"{job.schema}.{job.table}" for job in jobs if ensure_table(cur, job)]
    _sync_jobs(cur, jobs, every_job)
    return Migrated(applied, files, tables)


def _current(cur: Any, jobs: list[Job], files: list[tuple[int, str, Path]]) -> bool:
    """Is there nothing to apply, create or refuse? Then `migrate` takes no lock and changes
    nothing but the jobs' rows: a few reads, where the whole way costs some twenty round
    trips (each one counts on a distant database: a one-off `run` migrates as it starts)."""
    cur.execute("SELECT to_regclass('nightshift.schema_migrations') IS NOT NULL")
    if not cur.fetchone()[0]:
        return False
    cur.execute("SELECT version FROM nightshift.schema_migrations")
    own = {row[0] for row in cur.fetchall()}
    if any(version not in own for version, _, _ in migrations()):
        return False
    if files and not {version for version, _, _ in files} <= job_migrations_applied(cur):
        return False
    return not compare(cur, jobs)


def _sync_jobs(cur: Any, jobs: list[Job], every_job: bool) -> None:
    declared = [{"name": j.name, "schedule": j.schedule, "timezone": j.timezone} for j in jobs]
    queries.sync_jobs(cur, declared, retire_others=every_job)


def _apply_own_migrations(cur: Any) -> list[str]:
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
    return applied


def job_migration_files(directory: Path | None) -> list[tuple[int, str, Path]]:
    """The project's migration files in order: `NNNN_name.sql` in `directory` (if it exists).

    Raises ConfigError for a .sql file named otherwise, or two files of one number."""
    if directory is None or not directory.is_dir():
        return []
    found: dict[int, Path] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _JOB_MIGRATION_FILE.match(path.name)
        if not match:
            raise ConfigError(
                f"{shown(directory)}{path.name}: a migration file is named NNNN_name.sql"
                " (four digits, an underscore, then letters, digits or underscores)"
            )
        version = int(match[1])
        if version in found:
            raise ConfigError(
                f"{shown(directory)}: two migration files are numbered {match[1]}"
                f" ({found[version].name}, {path.name}); renumber one"
            )
        found[version] = path
    named = {version: _JOB_MIGRATION_FILE.match(path.name)[2] for version, path in found.items()}
    return [(version, named[version], found[version]) for version in sorted(found)]


def job_migrations_applied(cur: Any) -> set[int]:
    """The numbers of the project's migration files already applied (none before 0007)."""
    cur.execute("SELECT to_regclass('nightshift.job_migrations') IS NOT NULL")
    if not cur.fetchone()[0]:
        return set()
    cur.execute("SELECT version FROM nightshift.job_migrations")
    return {row[0] for row in cur.fetchall()}


def _apply_job_migrations(cur: Any, files: list[tuple[int, str, Path]]) -> list[str]:
    done = job_migrations_applied(cur) if files else set()
    applied = []
    for version, name, path in files:
        if version in done:
            continue
        log.info("job_migration_applying", file=path.name)  # a failure names the file
        text = path.read_text()
        if text.strip():
            cur.execute(text)
        cur.execute(
            "INSERT INTO nightshift.job_migrations (version, name) VALUES (%s, %s)",
            (version, name),
        )
        applied.append(path.stem)
    return applied


def shown(directory: Path) -> str:
    """A directory as an operator would write it: relative to here when it is below."""
    try:
        return f"{directory.resolve().relative_to(Path.cwd().resolve())}/"
    except ValueError:
        return f"{directory}/"


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
