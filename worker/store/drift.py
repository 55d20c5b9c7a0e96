"""Declaration drift: where a job's table no longer matches what the job declares.

`compare(cur, jobs)` reads the catalogs (and writes nothing, so `check` works on a read-only
database or a standby) and returns one `Difference` per disagreement: a column's type, a
declared column the table lacks, the table's primary key against the declared key (or no
unique constraint the upsert can use), a key column that may be null. The cursor and version
columns are columns like the others, named as such.

Types are compared as the server spells them (`format_type`): the declared text is resolved by
the server itself (`to_regtype`, then the type's own modifier function for `(10)` or `(12,2)`),
so `int`, `int4` and `integer` are one type, `timestamptz` is `timestamp with time zone`, and
`varchar(10)` is not `varchar(20)`.

`migrate` creates a missing table and adds a missing column; any other difference it refuses
(`Difference.refused`): only a migration file can resolve it, and `fix` is the statement that
file would hold.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from worker.database import sql
from worker.registry import Job

NOT_CREATED = "not created"  # the table does not exist yet: migrate creates it
MISSING = "missing column"  # migrate adds it
TYPE = "type"
UNKNOWN_TYPE = "unknown type"
KEY = "key"
NULLABLE_KEY = "nullable key"
_MIGRATE_RESOLVES = (NOT_CREATED, MISSING)

# The table's columns as the server spells their types; empty when there is no such table.
_COLUMNS = """
SELECT attname, format_type(atttypid, atttypmod), attnotnull
FROM pg_attribute
WHERE attrelid = to_regclass(format('%%I.%%I', %(schema)s, %(table)s))
  AND attnum > 0 AND NOT attisdropped
ORDER BY attnum
"""
# Its unique indexes: name (quoted), primary or not, key columns in order, and whether
# INSERT … ON CONFLICT (those columns) can use it as its arbiter.
_UNIQUE_INDEXES = """
SELECT quote_ident(c.relname), i.indisprimary,
       ARRAY(SELECT a.attname
             FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, n)
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
             WHERE k.n <= i.indnkeyatts ORDER BY k.n),
       i.indisvalid AND i.indimmediate AND i.indpred IS NULL AND i.indexprs IS NULL
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE i.indrelid = to_regclass(format('%%I.%%I', %(schema)s, %(table)s)) AND i.indisunique
ORDER BY NOT i.indisprimary, c.relname
"""
# Declared types as the server resolves them: the type, the function that reads its
# modifiers, and its spelling without them (NULLs for a type the server does not know).
_DECLARED_TYPES = """
SELECT d.text, t.oid, n.nspname, p.proname, format_type(t.oid, -1)
FROM unnest(%s::text[]) AS d(text)
LEFT JOIN pg_type t ON t.oid = to_regtype(d.text)
LEFT JOIN pg_proc p ON p.oid = t.typmodin
LEFT JOIN pg_namespace n ON n.oid = p.pronamespace
"""
_QUOTED = "SELECT quote_ident(name) FROM unnest(%s::text[]) WITH ORDINALITY u(name, n) ORDER BY n"
_MODIFIERS = re.compile(r"\(([\d\s,]+)\)")
# SQL's grammar gives these a length of 1 when none is written (`char` is `character(1)`).
_LENGTH_ONE = {"char", "character", "nchar", "national char", "national character", "bit"}


@dataclass(frozen=True)
class Difference:
    """One way a job's table differs from the job's declaration; `str()` is one line."""

    job: str
    table: str  # schema.table
    column: str | None  # None: the table as a whole (its key, or it is not created yet)
    kind: str  # NOT_CREATED, MISSING, TYPE, UNKNOWN_TYPE, KEY, NULLABLE_KEY
    problem: str  # what differs, e.g. "declared text, actual integer"
    fix: str | None = None  # the statement a migration file would hold
    role: str = ""  # what the column is to the job: "key", "cursor", "version"
    declared: str | None = None  # the column's declared type

    @property
    def drift(self) -> bool:
        """A table that exists and disagrees (one not created yet is simply still to come)."""
        return self.kind != NOT_CREATED

    @property
    def refused(self) -> bool:
        """`migrate` will not resolve it: a migration file must."""
        return self.kind not in _MIGRATE_RESOLVES

    def __str__(self) -> str:
        role = f" ({self.role})" if self.role else ""
        column = f", column {self.column}{role}" if self.column else ""
        return f"job {self.job}, table {self.table}{column}: {self.problem}"


def compare(cur: Any, jobs: Iterable[Job]) -> list[Difference]:
    """Every difference between the jobs' declarations and their tables, job by job."""
    jobs = list(jobs)
    types = _DeclaredTypes(cur, (declared for job in jobs for declared in job.columns.values()))
    found: list[Difference] = []
    for job in jobs:
        found += _JobTable(cur, job, types).differences()
    return found


def report(found: list[Difference]) -> list[str]:
    """`check`'s lines on the tables: what they come to, then one line per difference."""
    drift = [difference for difference in found if difference.drift]
    if drift:
        summary = counted(drift)
    elif found:
        summary = f"no differences; {len(found)} not created yet (migrate creates them)"
    else:
        summary = "every job's table matches its declaration"
    lines = [f"tables:    {summary}", *(f"  {difference}" for difference in found)]
    if any(difference.refused for difference in drift):
        lines.append("a type or a key that differs needs a migration file: migrate suggests one")
    return lines


def counted(differences: list[Difference]) -> str:
    """The count, as a line says it: "2 differences between the jobs' declarations and …"."""
    plural = "difference" if len(differences) == 1 else "differences"
    return f"{len(differences)} {plural} between the jobs' declarations and their tables"


def suggested_file(refused: list[Difference], version: int) -> str:
    """A name for the migration file that would resolve `refused`."""
    only = refused[0] if len(refused) == 1 else None
    table = only.table.split(".")[-1] if only else ""
    if only and only.kind == TYPE:
        words = [table, only.column or "", "to", only.declared or ""]
    elif only and only.kind == NULLABLE_KEY:
        words = [table, only.column or "", "not_null"]
    elif only:
        words = [table, "key"]
    else:
        words = ["match_job_declarations"]
    name = re.sub(r"[^a-z0-9]+", "_", "_".join(words).lower()).strip("_")[:60].rstrip("_")
    return f"{version:04d}_{name}.sql"


class _JobTable:
    """One job's table, read from the catalogs and held against its declaration."""

    def __init__(self, cur: Any, job: Job, types: _DeclaredTypes) -> None:
        self.cur = cur
        self.job = job
        self.types = types
        self.name = f"{job.schema}.{job.table}"
        self.where = {"schema": job.schema, "table": job.table}

    def differences(self) -> list[Difference]:
        self.cur.execute(_COLUMNS, self.where)
        actual = {name: (spelled, not_null) for name, spelled, not_null in self.cur.fetchall()}
        if not actual:
            return [self._found(NOT_CREATED, "not created yet: run migrate")]
        found = []
        for column, declared in self.job.columns.items():
            if column not in actual:
                problem = f"declared {declared}, missing from the table (migrate adds it)"
                found.append(self._found(MISSING, problem, column=column, declared=declared))
                continue
            spelled, not_null = actual[column]
            found += self._type(column, declared, spelled)
            if column in self.job.key and not not_null:
                fix = self._alter(f"ALTER COLUMN {self._quoted(column)[0]} SET NOT NULL")
                problem = "may be null; a key column must be NOT NULL"
                found.append(self._found(NULLABLE_KEY, problem, fix, column=column))
        return found + self._key()

    def _type(self, column: str, declared: str, spelled: str) -> list[Difference]:
        wanted = self.types.spelled(declared)
        if wanted is None:
            problem = f"declared {declared}, a type the server does not know (actual {spelled})"
            return [self._found(UNKNOWN_TYPE, problem, column=column, declared=declared)]
        # Some spellings only the grammar knows (`interval day to second`) are already the
        # server's own.
        if spelled in (wanted, _plain(declared)):
            return []
        also = f" ({wanted})" if wanted != _plain(declared) else ""
        name = self._quoted(column)[0]
        fix = self._alter(f"ALTER COLUMN {name} TYPE {declared} USING {name}::{declared}")
        problem = f"declared {declared}{also}, actual {spelled}"
        return [self._found(TYPE, problem, fix, column=column, declared=declared)]

    def _key(self) -> list[Difference]:
        self.cur.execute(_UNIQUE_INDEXES, self.where)
        indexes = self.cur.fetchall()
        key, shown = set(self.job.key), ", ".join(self.job.key)
        primary = next((row for row in indexes if row[1]), None)
        if primary is not None and set(primary[2]) != key:
            add = ", ".join(self._quoted(*self.job.key))
            fix = self._alter(f"DROP CONSTRAINT {primary[0]}, ADD PRIMARY KEY ({add})")
            problem = f"primary key ({', '.join(primary[2])}), declared key ({shown})"
            return [self._found(KEY, problem, fix)]
        if primary is None and not any(usable and set(cols) == key for *_, cols, usable in indexes):
            add = ", ".join(self._quoted(*self.job.key))
            fix = self._alter(f"ADD PRIMARY KEY ({add})")
            problem = f"no primary key or unique constraint on the declared key ({shown})"
            return [self._found(KEY, f"{problem}, which the upsert needs", fix)]
        return []

    def _alter(self, action: str) -> str:
        """`ALTER TABLE IF EXISTS …`: on a fresh database the migration files run before the
        job's table is created (as declared, then), so there the statement has nothing to do."""
        schema, table = self._quoted(self.job.schema, self.job.table)
        return f"ALTER TABLE IF EXISTS {schema}.{table} {action};"

    def _quoted(self, *names: str) -> list[str]:
        """Names as a statement must write them (`quote_ident`: "order", not order)."""
        self.cur.execute(_QUOTED, (list(names),))
        return [row[0] for row in self.cur.fetchall()]

    def _found(
        self,
        kind: str,
        problem: str,
        fix: str | None = None,
        column: str | None = None,
        declared: str | None = None,
    ) -> Difference:
        job = self.job
        roles = (
            ("key", column in job.key),
            ("cursor", column == job.cursor),
            ("version", column == job.version),
        )
        role = ", ".join(name for name, applies in roles if applies and column)
        return Difference(job.name, self.name, column, kind, problem, fix, role, declared)


class _DeclaredTypes:
    """Declared types as the server spells them: every one of the jobs' types asked at the
    first need, in two round trips at most (the types, then the modifiers of those that have
    them), not two per type: on a distant database each costs a round trip."""

    def __init__(self, cur: Any, declared: Iterable[str]) -> None:
        self.cur = cur
        self.pending = {_plain(text) for text in declared}
        self.known: dict[str, str | None] = {}

    def spelled(self, declared: str) -> str | None:
        """`format_type` of the declared type with its modifiers; None for an unknown type."""
        text = _plain(declared)
        if text not in self.known:
            self._ask(sorted(self.pending | {text}))
        return self.known[text]

    def _ask(self, texts: list[str]) -> None:
        self.pending.clear()
        self.cur.execute(_DECLARED_TYPES, (texts,))
        modified: list[tuple[str, int, str, str, list[str]]] = []
        for text, oid, schema, modifiers_function, plain in self.cur.fetchall():
            self.known[text] = plain
            if oid is None:
                continue
            found = _MODIFIERS.search(text)
            if found:
                modifiers = [part.strip() for part in found[1].split(",")]
            else:
                modifiers = ["1"] if text.removesuffix("[]").strip() in _LENGTH_ONE else []
            if modifiers and modifiers_function is not None:  # `float(24)` is real: none
                modified.append((text, oid, schema, modifiers_function, modifiers))
        if not modified:
            return
        spelled = sql.SQL(", ").join(
            sql.SQL("format_type({}, {}({}::cstring[]))").format(
                sql.Literal(oid),
                sql.Identifier(schema, function),
                sql.Literal("{" + ",".join(modifiers) + "}"),
            )
            for _, oid, schema, function, modifiers in modified
        )
        self.cur.execute(sql.SQL("SELECT ") + spelled)
        for (text, *_), value in zip(modified, self.cur.fetchone(), strict=True):
            self.known[text] = str(value)


def _plain(declared: str) -> str:
    """The declared text in lower case and single-spaced, as format_type writes it: no space
    before or inside parentheses and brackets, none around a comma."""
    text = re.sub(r"\s*([(\[,])\s*", r"\1", " ".join(declared.lower().split()))
    return re.sub(r"\s+([)\]])", r"\1", text)
