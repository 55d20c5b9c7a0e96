"""The statement a batch is written with: `execute_values`, one INSERT per batch.

upsert: INSERT … ON CONFLICT (key) DO UPDATE, skipping rows whose values did not change, so
a rerun changes nothing; with a version column, only a row at least as new as the stored one
replaces it. append: ON CONFLICT (key) DO NOTHING, a known row is kept as it is. Either way a
replayed batch writes nothing twice. A batch holding one key twice is reduced first (Postgres
refuses to touch a row twice in one statement): the greatest version wins, then in upsert mode
the later row, in append mode the first. "One key" is as the table compares it (`keys`): `1`
and `"1"` in a text key, two spellings of a uuid, two offsets of one instant are one key.

Rows the table refuses are isolated, not fatal: a row that fails the declaration's checks is
refused before the INSERT; when the database refuses the INSERT for its values, the batch is
written again under savepoints, halving the failing part until each refused row stands alone.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from worker.database import RowsRefused, sql
from worker.registry import Job
from worker.run.errors import Unconvertible
from worker.run.keys import Identity, identity
from worker.run.values import convert

# Values whose length counts towards a batch's bytes (the others count 8).
_SIZED = frozenset({str, bytes})
# Types without an `=` operator: the "did it change" test compares their text instead.
_NO_EQUALITY = frozenset(
    {"json", "xml", "point", "line", "lseg", "box", "path", "polygon", "circle"}
)


@dataclass(frozen=True)
class Refusal:
    """A row the table (or the declaration) refused, and why."""

    row: Any
    error: str
    by_database: bool  # refused by the database or the driver, not by the declaration's checks


@dataclass(slots=True)  # not frozen: made once per row, and a frozen one costs 3x to make
class Checked:
    """A row that passed the declaration's checks, ready to send."""

    values: tuple  # in column order, JSON columns encoded, as the job yielded them
    key: tuple  # the key's identity: its values as the table compares them (`keys`)
    version: Any
    row: Any  # as the job yielded it (kept for a refusal)
    size: int  # about how many bytes its values take in the statement


@dataclass
class Written:
    rows: int = 0  # rows sent and accepted
    changed: int = 0  # of those, inserted or actually changed
    refused: list[Refusal] = field(default_factory=list)


class Loader:
    """Turns a job's rows into one INSERT per batch."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.columns = tuple(job.columns)
        self._known = frozenset(self.columns)
        self._key_index = tuple(self.columns.index(k) for k in job.key)
        self._version_index = self.columns.index(job.version) if job.version else None
        self.cursor_is_version = job.cursor is not None and job.cursor == job.version
        self._version_type = job.columns[job.version] if job.version else ""
        self._key_of = _picker(self._key_index)
        self._identity_of = _picker(
            self._key_index, tuple(identity(job.columns[k]) for k in job.key)
        )
        self._json_chunks = json_chunks()
        self._width = 8 * len(self.columns)
        self._json_index = tuple(
            i for i, t in enumerate(job.columns.values()) if t.strip().lower() in ("json", "jsonb")
        )
        self.statement = self._statement()

    def _statement(self) -> sql.Composed:
        table = sql.Identifier(self.job.schema, self.job.table)
        insert = sql.SQL("INSERT INTO {} AS t ({}) VALUES {} ON CONFLICT ({}) ").format(
            table,
            sql.SQL(", ").join(map(sql.Identifier, self.columns)),
            sql.ROWS,
            sql.SQL(", ").join(map(sql.Identifier, self.job.key)),
        )
        others = [c for c in self.columns if c not in self.job.key]
        if self.job.mode == "append" or not others:
            return insert + sql.SQL("DO NOTHING")
        assignments = sql.SQL(", ").join(
            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in others
        )
        current = sql.SQL(", ").join(self._comparable("t", c) for c in others)
        incoming = sql.SQL(", ").join(self._comparable("EXCLUDED", c) for c in others)
        # ROW(...) so a single column still compares as a row.
        condition = sql.SQL("ROW({}) IS DISTINCT FROM ROW({})").format(current, incoming)
        if self.job.version:
            # Newer wins: an older revision never replaces a stored one (NULL: unknown, takes).
            condition = sql.SQL("({0} IS NULL OR {1} >= {0}) AND {2}").format(
                sql.SQL("t.{}").format(sql.Identifier(self.job.version)),
                sql.SQL("EXCLUDED.{}").format(sql.Identifier(self.job.version)),
                condition,
            )
        return insert + sql.SQL("DO UPDATE SET {} WHERE {}").format(assignments, condition)

    def _comparable(self, alias: str, column: str) -> sql.Composable:
        value = sql.SQL("{}.{}").format(sql.SQL(alias), sql.Identifier(column))
        kind = self.job.columns[column].strip().lower()
        if kind.removesuffix("[]") in _NO_EQUALITY:
            return sql.SQL("{}::text").format(value)
        return value

    # -- checking rows ---------------------------------------------------------------------------
    def check(self, row: Any) -> Checked:
        """A row checked against the declaration, its values in column order (JSON encoded);
        ValueError says why it is refused."""
        if type(row) is not dict and not isinstance(row, Mapping):
            raise ValueError(f"a row must be a dict, got {type(row).__name__}")
        if not self._known.issuperset(row):
            unknown = ", ".join(sorted(str(k) for k in row if k not in self._known))
            raise ValueError(f"row has undeclared column(s) {unknown}")
        values = tuple(map(row.get, self.columns))
        key = self._identity_of(values)  # None stays None, a value it cannot convert stays as is
        if None in key:
            raise ValueError(f"row has no value for key {', '.join(self.job.key)}")
        try:
            hash(key)
        except TypeError:
            kinds = ", ".join(type(v).__name__ for v in self._key_of(values))
            raise ValueError(
                f"key {', '.join(self.job.key)} must be a plain value, not {kinds}"
            ) from None
        version = None
        if self._version_index is not None:
            try:
                version = convert(self._version_type, values[self._version_index])
            except Unconvertible as exc:
                raise ValueError(f"version column {self.job.version!r}: {exc}") from None
        if self._json_index:
            values = self._encode_json(values)
        # About the bytes the values take in the statement: text is most of it, 8 for the rest.
        size = self._width
        for value in values:
            if type(value) in _SIZED:  # type(): an object can claim to be a str
                size += len(value)
        return Checked(values, key, version, row, size)

    def check_all(self, rows: Sequence[Any]) -> tuple[list[Checked], list[Refusal]]:
        checked: list[Checked] = []
        refused: list[Refusal] = []
        for row in rows:
            try:
                checked.append(self.check(row))
            except ValueError as exc:
                refused.append(Refusal(row, str(exc), by_database=False))
        return checked, refused

    def reduce(self, rows: Sequence[Checked]) -> list[Checked]:
        """One row per key: the greatest version, then the later row (upsert) or the first."""
        by_key: dict[tuple, Checked] = {}
        keep_later = self.job.mode == "upsert"
        versioned = self._version_index is not None
        for row in rows:
            held = by_key.get(row.key)
            if held is not None:
                if versioned and not _newer_or_same(row.version, held.version):
                    continue  # an older revision of a row the batch already holds
                if not keep_later:
                    continue
                del by_key[row.key]  # re-insert so the batch keeps arrival order
            by_key[row.key] = row
        return list(by_key.values())

    def _encode_json(self, values: tuple) -> tuple:
        # A JSON text is adapted as a plain string: cheaper than psycopg2's Json wrapper.
        encoded = list(values)
        chunks = self._json_chunks
        for i in self._json_index:
            if encoded[i] is not None:
                try:
                    encoded[i] = "".join(chunks(encoded[i], 0))
                except Exception as exc:
                    self._json_chunks = json_chunks()
                    if not isinstance(exc, TypeError | ValueError):
                        raise
                    raise ValueError(f"column {self.columns[i]!r} is not JSON: {exc}") from None
        return tuple(encoded)

    # -- writing ---------------------------------------------------------------------------------
    def prepare(self, rows: Sequence[Checked]) -> list[tuple]:
        """The values to send for a batch: one row per key (`reduce`), in column order."""
        return [row.values for row in self.reduce(rows)]

    def write(self, cur: Any, rows: Sequence[Checked], isolate: bool = False) -> Written:
        """Write one batch of checked rows in the caller's transaction.

        Without `isolate`, a refusal by the database raises RowsRefused (the transaction is
        aborted: write it again with `isolate`); with it, refused rows are set apart."""
        kept = self.reduce(rows)
        written = Written()
        if not kept:
            return written
        values = [row.values for row in kept]
        if not isolate:
            written.changed = sql.insert_values(cur, self.statement, values)
            written.rows = len(values)
            return written
        self._write_isolating(cur, values, [row.row for row in kept], written)
        return written

    def write_rows(self, cur: Any, rows: Sequence[Any], isolate: bool = False) -> Written:
        """Check, then write, rows as a job yields them; refused ones are set apart."""
        checked, refused = self.check_all(rows)
        written = self.write(cur, checked, isolate)
        written.refused[:0] = refused
        return written

    def _write_isolating(
        self, cur: Any, values: list[tuple], sources: list[Any], written: Written
    ) -> None:
        try:
            written.changed += sql.insert_values(cur, self.statement, values, isolated=True)
            written.rows += len(values)
            return
        except RowsRefused as exc:
            if len(values) == 1:
                written.refused.append(Refusal(sources[0], str(exc), by_database=True))
                return
        half = len(values) // 2
        self._write_isolating(cur, values[:half], sources[:half], written)
        self._write_isolating(cur, values[half:], sources[half:], written)


def _newer_or_same(version: Any, held: Any) -> bool:
    """Does a row of `version` replace one of version `held`? As the statement decides: an
    unknown (NULL) stored version takes anything; an unknown incoming one replaces nothing."""
    return held is None or (version is not None and version >= held)


def _picker(
    indexes: tuple[int, ...], identities: tuple[Identity, ...] = ()
) -> Callable[[tuple], tuple]:
    """A function taking the values at `indexes` out of a row, as a tuple; each through its
    identity when they are given (the row's hot path: a plain int or str key costs one call)."""
    if not identities:
        if len(indexes) == 1:
            index = indexes[0]
            return lambda values: (values[index],)
        return itemgetter(*indexes)
    if len(indexes) == 1:
        index, identify = indexes[0], identities[0]
        return lambda values: (identify(values[index]),)
    if len(indexes) == 2:
        (i, j), (first, second) = indexes, identities
        return lambda values: (first(values[i]), second(values[j]))
    pairs = list(zip(indexes, identities, strict=True))
    return lambda values: tuple([f(values[i]) for i, f in pairs])


def json_chunks() -> Callable[[Any, int], Any]:
    """An encoder giving `json.dumps(value, allow_nan=False)` as chunks (`"".join` them), made
    once for many rows: json.dumps makes one per call, a third of its cost. Make a fresh one
    after a failure (a failed call may leave marks behind)."""
    make = json.encoder.c_make_encoder
    if make is None:  # no C accelerator: the plain way
        encoder = json.JSONEncoder(allow_nan=False)
        return lambda value, _level: encoder.iterencode(value, _one_shot=True)
    return make(
        {}, _not_json, json.encoder.encode_basestring_ascii, None, ": ", ", ", False, False, False
    )


def _not_json(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
