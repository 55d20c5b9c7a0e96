"""A job's saved state, and how it advances: only ever past rows that are committed.

The state is a JSON object saved in the same transaction as the batch that reached it. Its
cursor is the greatest value of the job's cursor column among committed rows, converted to the
column's type (`worker.run.values`). A cursor describes one source: a job reading several (or
a feed whose URL changes) names the source with `ctx.scope(name)`, and each scope keeps its
own cursor (`cursors` in the state; the unnamed scope keeps `cursor`).

While rows arrive in cursor order, each batch saves the cursor it reached; once a row goes
backwards, a mid-run batch can no longer say "everything up to here is in", so the cursor
only moves again with the run's last batch. Values a job sets with `ctx.checkpoint()` are
saved with the next batch.

A run with a window (`--since/--until`) or a full refresh starts from no saved state; a run
with a window saves none either (as dlt's incremental with an end value): a backfill must
never move the cursor past rows it did not load. A full refresh replaces the saved state with
its own, even when it reaches no cursor.

A saved cursor that cannot be read back as its column's type (NaN or ±Infinity saved by an
older version, or a column whose type changed) fails the run in one line naming the remedy,
`--full-refresh`, which never reads it.
"""

from __future__ import annotations

from typing import Any

from worker.redact import safe_url
from worker.registry import Job
from worker.run.errors import BadState, Unconvertible
from worker.run.values import convert

CURSOR, CURSORS = "cursor", "cursors"


def decode_cursor(sql_type: str, raw: Any) -> Any:
    """Turn a saved (JSON) cursor back into the type of its column."""
    return convert(sql_type, raw)


class StateTracker:
    """Holds the saved state and works out what each batch may save."""

    def __init__(
        self, job: Job, saved: dict[str, Any], full_refresh: bool = False, window: bool = False
    ) -> None:
        self.job = job
        self._cursor_type = job.columns[job.cursor] if job.cursor else None
        self.saving = not window
        self.saved: dict[str, Any] = {} if full_refresh or window else dict(saved)
        self._check_saved_cursors()
        # A full refresh's first batch saves its state even when it holds nothing new: what the
        # database holds is the state this run set out to replace.
        self._replacing = full_refresh and self.saving and bool(saved)
        self.scope: str | None = None
        self._latest = dict(self.saved)
        self._highest: Any = None
        self._in_order = True
        self._pending: dict[str, Any] = {}
        self.cursor = self._saved_cursor(self._latest)

    # -- what the job sees -----------------------------------------------------------------------
    def set_scope(self, name: str) -> None:
        """Rows from now on come from source `name`; the cursor becomes that source's."""
        if self._highest is not None and name != self.scope:
            raise ValueError("ctx.scope() must be called before the first row is yielded")
        name = str(name)
        # A URL's credentials are no part of what it names (nor are they kept in the state).
        self.scope = safe_url(name) if "://" in name else name
        self.cursor = self._saved_cursor(self._latest)

    def checkpoint(self, values: dict[str, Any]) -> None:
        if CURSOR in values or CURSORS in values:
            raise ValueError("'cursor' and 'cursors' are kept by the engine; choose another name")
        self._pending.update(values)

    @property
    def reached(self) -> Any:
        """The greatest cursor value among the rows observed so far (None: none yet)."""
        return self._highest

    # -- what the engine tells it ----------------------------------------------------------------
    def observe(self, row: Any) -> None:
        """Note a row the job yielded, before it is written. Raises Unconvertible when its
        cursor value does not fit the column's type (the row is then refused)."""
        if self._cursor_type:
            self.observe_value(convert(self._cursor_type, row.get(self.job.cursor)))

    def observe_value(self, value: Any) -> None:
        """`observe`, for a cursor value already converted to its column's type."""
        if value is None:
            return
        if self._highest is not None and value < self._highest:
            self._in_order = False
        if self._highest is None or value > self._highest:
            self._highest = value

    def for_batch(self, final: bool) -> dict[str, Any] | None:
        """The state to save with the batch being written, or None when it is unchanged."""
        if not self.saving:
            return None
        state = {**self._latest, **self._pending}
        if self._highest is not None and (self._in_order or final):
            previous = self._saved_cursor(self._latest)
            if previous is None or self._highest > previous:
                state = self._with_cursor(state, self._highest)
        return None if state == self._latest and not self._replacing else state

    def handed(self, state: dict[str, Any] | None) -> None:
        """The batch carrying `state` is on its way: it commits before any later batch does,
        or the run fails (and a new run starts from what the database holds)."""
        if state is not None:
            self._latest = state
            self._pending = {}
            self._replacing = False
            self.cursor = self._saved_cursor(state)

    # -- the cursor's place in the state ---------------------------------------------------------
    def _check_saved_cursors(self) -> None:
        """Raise BadState when a saved cursor (of any source) cannot be read back.

        Failing, rather than ignoring the value and starting from no cursor, is deliberate: a
        job without its cursor reads its source from the start, which for an API can mean hours
        of requests, rate limits and a bill. That is the operator's call, made with
        `--full-refresh` (the run that does exactly that), not one to take silently on a
        schedule behind a log line nobody reads. Checked before the job starts, every source's,
        so the failure is the run's own line and not an error raised inside the job's code.
        """
        if self._cursor_type is None:
            return
        saved: list[tuple[str | None, Any]] = [(None, self.saved.get(CURSOR))]
        scoped = self.saved.get(CURSORS)
        if isinstance(scoped, dict):
            saved += list(scoped.items())
        for scope, raw in saved:
            try:
                decode_cursor(self._cursor_type, raw)
            except Unconvertible as exc:
                source = f" for source {scope!r}" if scope is not None else ""
                raise BadState(
                    f"the saved cursor of job {self.job.name!r}{source} cannot be used ({exc});"
                    f" run `python -m worker run {self.job.name} --full-refresh` to load the"
                    " job afresh and replace it"
                ) from None

    def _saved_cursor(self, state: dict[str, Any]) -> Any:
        if not self.job.cursor:
            return None
        raw = state.get(CURSOR) if self.scope is None else state.get(CURSORS, {}).get(self.scope)
        return decode_cursor(self.job.columns[self.job.cursor], raw)

    def _with_cursor(self, state: dict[str, Any], value: Any) -> dict[str, Any]:
        if self.scope is None:
            return {**state, CURSOR: value}
        return {**state, CURSORS: {**state.get(CURSORS, {}), self.scope: value}}
