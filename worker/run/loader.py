"""Where a batch is written: `execute_values`, one statement per batch.

upsert: INSERT … ON CONFLICT (key) DO UPDATE, skipping rows whose values did not change, so
a rerun changes nothing. append: ON CONFLICT (key) DO NOTHING, a known row is kept as it is.
Either way a replayed batch writes nothing twice. A batch holding one key twice is reduced
first (Postgres refuses to touch a row twice in one statement): in upsert mode the later row
wins, in append mode the first.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from worker.database import sql
from worker.registry import Job
from worker.run.errors import BadRow

# Types without an `=` operator: the "did it change" test compares their text instead.
_NO_EQUALITY = frozenset(
    {"json", "xml", "point", "line", "lseg", "box", "path", "polygon", "circle"}
)


class Loader:
    """Turns a job's rows into one INSERT per batch."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.columns = tuple(job.columns)
        self._known = frozenset(self.columns)
        self._key_index = tuple(self.columns.index(k) for k in job.key)
        self._json = frozenset(
            name for name, t in job.columns.items() if t.strip().lower() in ("json", "jsonb")
        )
        self.statement = self._statement()

    def _statement(self) -> sql.Composed:
        table = sql.Identifier(self.job.schema, self.job.table)
        insert = sql.SQL("INSERT INTO {} AS t ({}) VALUES %s ON CONFLICT ({}) ").format(
            table,
            sql.SQL(", ").join(map(sql.Identifier, self.columns)),
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
        return insert + sql.SQL("DO UPDATE SET {} WHERE ROW({}) IS DISTINCT FROM ROW({})").format(
            assignments, current, incoming
        )

    def _comparable(self, alias: str, column: str) -> sql.Composable:
        value = sql.SQL("{}.{}").format(sql.SQL(alias), sql.Identifier(column))
        kind = self.job.columns[column].strip().lower()
        if kind.removesuffix("[]") in _NO_EQUALITY:
            return sql.SQL("{}::text").format(value)
        return value

    def prepare(self, rows: Sequence[Mapping[str, Any]]) -> list[tuple]:
        """Check each row against the declaration, drop repeated keys, order the values."""
        by_key: dict[tuple, tuple] = {}
        keep_later = self.job.mode == "upsert"
        known, columns, key_index = self._known, self.columns, self._key_index
        json_index = [i for i, c in enumerate(columns) if c in self._json]
        for row in rows:
            if not isinstance(row, dict) and not isinstance(row, Mapping):
                raise BadRow(f"a row must be a dict, got {type(row).__name__}")
            if not known.issuperset(row):
                unknown = ", ".join(sorted(str(k) for k in row if k not in known))
                raise BadRow(f"row has undeclared column(s) {unknown}")
            values = tuple(map(row.get, columns))
            if json_index:
                values = self._encode_json(values, json_index)
            key = tuple(values[i] for i in key_index)
            if None in key:
                raise BadRow(f"row has no value for key {', '.join(self.job.key)}: {dict(row)!r}")
            if keep_later:
                by_key.pop(key, None)  # re-insert so the batch keeps arrival order
                by_key[key] = values
            else:
                by_key.setdefault(key, values)
        return list(by_key.values())

    @staticmethod
    def _encode_json(values: tuple, json_index: list[int]) -> tuple:
        # A JSON text is adapted as a plain string: cheaper than psycopg2's Json wrapper.
        encoded = list(values)
        for i in json_index:
            if encoded[i] is not None:
                encoded[i] = json.dumps(encoded[i])
        return tuple(encoded)

    def write(self, cur: Any, rows: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
        """Write one batch in the caller's transaction. Returns (rows written, rows changed)."""
        values = self.prepare(rows)
        if not values:
            return 0, 0
        return len(values), sql.insert_values(cur, self.statement, values)
