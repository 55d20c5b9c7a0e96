"""A job's saved state, and how it advances: only ever past rows that are committed.

The state is a JSON object saved in the same transaction as the batch that reached it.
Its `cursor` entry is the greatest value of the job's cursor column among committed rows.
While rows arrive in cursor order, each batch saves the cursor it reached; once a row goes
backwards, a mid-run batch can no longer say "everything up to here is in", so the cursor
only moves again with the run's last batch. Values a job sets with `ctx.checkpoint()` are
saved with the next batch.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from worker.registry import Job


def decode_cursor(sql_type: str, raw: Any) -> Any:
    """Turn a saved (JSON) cursor back into the type of its column."""
    if raw is None:
        return None
    kind = sql_type.strip().lower()
    if kind.startswith("timestamp"):
        return dt.datetime.fromisoformat(raw)
    if kind == "date":
        return dt.date.fromisoformat(raw)
    if kind in ("integer", "int", "bigint", "smallint", "int4", "int8", "int2"):
        return int(raw)
    if kind.startswith(("numeric", "decimal")):
        return Decimal(raw)
    if kind in ("double precision", "real", "float8", "float4"):
        return float(raw)
    return raw


class StateTracker:
    """Holds the saved state and works out what each batch may save."""

    def __init__(self, job: Job, saved: dict[str, Any], full_refresh: bool = False) -> None:
        self.job = job
        self.saved: dict[str, Any] = {} if full_refresh else dict(saved)
        column_type = job.columns.get(job.cursor or "", "text")
        self.cursor = decode_cursor(column_type, self.saved.get("cursor")) if job.cursor else None
        self._committed = dict(self.saved)
        self._highest: Any = None
        self._in_order = True
        self._pending: dict[str, Any] = {}

    def observe(self, row: Any) -> None:
        """Note a row the job yielded (before its batch is written)."""
        if not self.job.cursor or not hasattr(row, "get"):
            return
        value = row.get(self.job.cursor)
        if value is None:
            return
        if self._highest is not None and value < self._highest:
            self._in_order = False
        if self._highest is None or value > self._highest:
            self._highest = value

    def checkpoint(self, values: dict[str, Any]) -> None:
        if "cursor" in values:
            raise ValueError("'cursor' is kept by the engine; choose another name")
        self._pending.update(values)

    def for_batch(self, final: bool) -> dict[str, Any] | None:
        """The state to save with the batch being written, or None when it is unchanged."""
        state = {**self._committed, **self._pending}
        if self._highest is not None and (self._in_order or final):
            previous = self.cursor if "cursor" in self._committed else None
            if previous is None or self._highest > previous:
                state["cursor"] = self._highest
        return None if state == self._committed else state

    def committed(self, state: dict[str, Any] | None) -> None:
        """The batch carrying `state` has committed."""
        if state is not None:
            self._committed = state
            self._pending = {}
            if "cursor" in state:
                self.cursor = state["cursor"]
