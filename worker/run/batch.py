"""Where a batch is written: its rows, its refused rows, the run's progress and the job's state,
in one transaction.

A run killed at any point leaves only whole batches, each with the state that describes it,
so a rerun loses nothing and doubles nothing. A batch replayed after a fault writes the same
rows again (upsert on the key) and the same absolute totals: it counts once. Rows the table
refuses are kept in `nightshift.rejects` in the same transaction, up to the job's
`max_rejected` per run.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from worker.database import Database, DatabaseError, DatabaseUnavailable, RowsRefused, sql
from worker.logs import get_logger
from worker.registry import Job
from worker.run.errors import (
    CommitsLost,
    DatabaseLost,
    LoadFailed,
    LockLost,
    TooManyRejected,
    Unconvertible,
)
from worker.run.inflight import InFlight
from worker.run.loader import Checked, Loader, Refusal, Written
from worker.run.rejects import held_now
from worker.run.state import StateTracker
from worker.store import queries
from worker.text import stored

log = get_logger("nightshift.run")
# A run's first batch holds this many rows at most, each next one twice the one before, up to
# BATCH_SIZE: the server starts on the first rows soon after they arrive instead of idling
# while a whole batch is read and checked, and a run's first commit comes early.
FIRST_BATCH_ROWS = 1000


@dataclass
class Progress:
    """What the run's committed batches wrote so far."""

    rows: int = 0
    changed: int = 0
    batches: int = 0
    rejected: int = 0
    # `changed` after each batch, by its number: the database records a batch's changed rows
    # with the batch after it, so a run taken up after a failover counts from here.
    changed_after: dict[int, int] = field(default_factory=dict)

    def changed_through(self, batches: int, held: int) -> int:
        """The changed rows of batches 1..`batches` (`held`: what the database recorded)."""
        return self.changed_after.get(batches, held)


class SessionGuard:
    """Checks that the run may carry on in each of its transactions.

    On a session it has not seen, it takes the job's lock again (or stops: someone else runs
    the job now). `strict`: the database must still hold every batch the run saw commit — a
    failover to an asynchronous replica can lose the last commits; the state is still
    consistent with the rows (same transactions), so the run can reload from there.
    """

    def __init__(self, db: Database, job: Job, run_id: int, progress: Progress) -> None:
        self.db = db
        self.job = job
        self.run_id = run_id
        self.progress = progress
        self._checked = db.sessions  # the session that opened the run holds the lock

    def check(self, cur: Any, strict: bool = True, always: bool = False) -> None:
        """`always`: verify the batches even on a session already checked (at the finish)."""
        new_session = self.db.sessions != self._checked
        if new_session and not queries.try_lock(cur, self.job.name):
            raise LockLost("lost the job's lock to another process while reconnecting")
        if strict and (new_session or always):
            held = queries.held_progress(cur, self.run_id)
            if held is None or held.batches < self.progress.batches:
                lost = self.progress.batches - (held.batches if held else 0)
                raise CommitsLost(
                    f"the database lost {lost} committed batch(es), likely in a failover",
                    held,
                )
        self._checked = self.db.sessions


@dataclass(frozen=True)
class Batch:
    number: int
    rows: list[Checked]
    refused: list[Refusal]  # refused by the declaration's checks, before the INSERT
    state: dict[str, Any] | None  # the job's state the batch reaches (None: unchanged)
    values: list[tuple]  # what the INSERT sends: one row per key
    rendered: sql.Rendered | None  # those values as execute_values renders them, if done yet


class BatchWriter:
    """Buffers a run's rows and writes them a batch at a time, one batch in flight while the
    next is read (`worker.run.inflight`). Its progress and its session's checks are only ever
    touched by the batch's thread, or by the run's once the last batch is settled."""

    def __init__(
        self,
        db: Database,
        job: Job,
        run_id: int,
        tracker: StateTracker,
        guard: SessionGuard,
        progress: Progress,
        max_rejected: int,
        max_rows: int,
        max_bytes: int,
        stopping: Callable[[], None] = lambda: None,
    ) -> None:
        """`stopping` raises when the run must stop: no batch starts after that."""
        self.db = db
        self.job = job
        self.run_id = run_id
        self.tracker = tracker
        self.guard = guard
        self.progress = progress
        self.max_rejected = max_rejected
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.stopping = stopping
        self.loader = Loader(job)
        self.buffer: list[Checked] = []
        self.buffered_bytes = 0
        self.refused: list[Refusal] = []  # refused before the INSERT, saved with the next batch
        self.handed = 0  # batches handed to the thread that writes them
        self.limit = min(max_rows, FIRST_BATCH_ROWS)  # rows in the batch being read, at most
        self.in_flight = InFlight("batch-writer")

    def add(self, row: Any) -> bool:
        """Take one row (checked now, or refused); True when the batch is full: flush it."""
        checked = admit(self.loader, self.tracker, row)
        if isinstance(checked, Refusal):
            self.refused.append(checked)
            return False
        self.buffer.append(checked)
        self.buffered_bytes += checked.size
        return len(self.buffer) >= self.limit or self.buffered_bytes >= self.max_bytes

    def flush(self, final: bool) -> None:
        """Hand the buffered rows, with the state they reach, to the batch in flight's thread;
        `final`: the job has ended. Raises the failure of the batch before, if it failed."""
        state = self.tracker.for_batch(final=final)
        if not self.buffer and not self.refused and state is None:
            return
        values = self.loader.prepare(self.buffer)
        # Rendered here, while the batch before is still at the server: its thread only sends.
        with self.db.quoting() as session:
            rendered = sql.render_values(session, values) if session and not self.refused else None
        self.in_flight.wait()  # the batch before commits first
        self.stopping()
        self.handed += 1
        batch = Batch(self.handed, self.buffer, self.refused, state, values, rendered)
        self.buffer, self.buffered_bytes, self.refused = [], 0, []
        self.limit = min(self.max_rows, self.limit * 2)
        # The next batch's state builds on this one's: batches commit in order, or the run fails.
        self.tracker.handed(state)
        self.in_flight.hand_over(lambda: self._write(batch))

    def drain(self) -> None:
        """Wait for the last batch to commit; raise its failure."""
        self.in_flight.wait()

    def settle(self) -> BaseException | None:
        """The run is failing: wait for the batch in flight; return its failure, if any."""
        return self.in_flight.settle()

    def close(self) -> None:
        self.in_flight.close()

    # -- in the batch's thread -------------------------------------------------------------------
    def _write(self, batch: Batch) -> None:
        """Write one batch (in one statement when no row of it was refused), then count it."""
        try:
            try:
                if batch.refused:  # rare: they are saved in the same transaction
                    written, refused = self._write_refusing(batch)
                else:
                    written, refused = self.db.run(lambda cur: self._send(cur, batch), single=True)
            except RowsRefused:  # the database refused some rows: set them apart
                written, refused = self._write_refusing(batch, isolate=True)
        except DatabaseUnavailable as exc:
            raise DatabaseLost(str(exc)) from exc
        except DatabaseError as exc:
            raise LoadFailed(f"{exc} (batch {batch.number})") from exc
        progress = self.progress
        progress.rows += written.rows
        progress.changed += written.changed
        progress.changed_after[batch.number] = progress.changed
        progress.batches = batch.number
        progress.rejected += len(refused)
        for refusal in refused:
            log.warning(
                "row_rejected", batch=batch.number, key=self._key(refusal), error=refusal.error
            )
        log.debug("batch_committed", batch=batch.number, rows=written.rows, changed=written.changed)

    def _send(self, cur: Any, batch: Batch) -> tuple[Written, list[Refusal]]:
        """The batch's rows, progress and state as ONE statement: one round trip."""
        self.guard.check(cur)
        values = batch.values
        progress = self.progress
        statement = queries.batch_statement(
            self.loader.statement if values else None,
            self.run_id,
            self.job.name,
            batch.state,
            rows_total=progress.rows + len(values),
            changed_before=progress.changed,
            batches=batch.number,
            rejected=progress.rejected,
        )
        changed = sql.send_batch(cur, statement, values, batch.rendered)
        return Written(rows=len(values), changed=changed), []

    def _write_refusing(self, batch: Batch, isolate: bool = False) -> tuple[Written, list[Refusal]]:
        """A batch with refused rows, saved with it in one transaction. `isolate`: the database
        refuses some of its rows, find them (under savepoints)."""
        try:
            return self.db.run(lambda cur: self._write_with_refusals(cur, batch, isolate))
        except RowsRefused:
            if isolate:
                raise
            return self.db.run(lambda cur: self._write_with_refusals(cur, batch, True))

    def _write_with_refusals(
        self, cur: Any, batch: Batch, isolate: bool
    ) -> tuple[Written, list[Refusal]]:
        self.guard.check(cur)
        progress = self.progress
        # What the table held for each refused row's key before this batch: the batch may
        # write the same key (a later row), which a replay must then not undo.
        held = [held_now(cur, self.job, refusal.row) for refusal in batch.refused]
        written = self.loader.write(cur, batch.rows, isolate=isolate)
        refused = batch.refused + written.refused
        rejected = progress.rejected + len(refused)
        if rejected > self.max_rejected:
            raise self._too_many(refused[-1], rejected, batch.number)
        held += [held_now(cur, self.job, refusal.row) for refusal in written.refused]
        for refusal, before in zip(refused, held, strict=True):
            self._save_reject(cur, refusal, before)
        queries.save_progress(
            cur,
            self.run_id,
            self.job.name,
            batch.state,
            rows=progress.rows + written.rows,
            changed=progress.changed + written.changed,
            batches=batch.number,
            rejected=rejected,
        )
        return written, refused

    # -- refused rows ----------------------------------------------------------------------------
    def _too_many(self, last: Refusal, rejected: int, batch: int) -> TooManyRejected:
        cause = "load" if last.by_database else "bad row"
        if self.max_rejected == 0:
            return TooManyRejected(f"{last.error} (batch {batch})", cause)
        return TooManyRejected(
            f"{rejected} rows refused, more than max_rejected={self.max_rejected};"
            f" the last: {last.error} (batch {batch})",
            cause,
        )

    def _key(self, refusal: Refusal) -> str | None:
        row = refusal.row
        if not isinstance(row, Mapping):
            return None
        return _as_json({name: row.get(name) for name in self.job.key})

    def _save_reject(self, cur: Any, refusal: Refusal, held: str | None) -> None:
        row = refusal.row
        document = _as_json(_columns_as_json(row) if isinstance(row, Mapping) else repr(row))
        key, error = self._key(refusal), stored(refusal.error)
        queries.save_reject(cur, self.job.name, self.run_id, key, document, error, held)


def admit(loader: Loader, tracker: StateTracker, row: Any) -> Checked | Refusal:
    """A row checked against the declaration, its cursor noted; or why it is refused."""
    try:
        checked = loader.check(row)
        if loader.cursor_is_version:  # converted once, by the check
            tracker.observe_value(checked.version)
        else:
            tracker.observe(row)
    except Unconvertible as exc:
        return Refusal(row, f"cursor column {loader.job.cursor!r}: {exc}", False)
    except ValueError as exc:
        return Refusal(row, str(exc), False)
    return checked


def _columns_as_json(row: Mapping) -> dict:
    """A row's columns as JSON can keep them for a replay: a column's NaN or ±Infinity as the
    text the server reads back as that number ("NaN", "Infinity", "-Infinity"); inside a JSON
    document, where no such number can exist, it stays what it is (and the row refused)."""
    return {
        name: ("NaN" if value != value else _INFINITIES.get(value, value))
        if type(value) is float
        else value
        for name, value in row.items()
    }


_INFINITIES = {float("inf"): "Infinity", float("-inf"): "-Infinity"}


def _as_json(value: Any) -> str:
    """JSON text for anything a job yields: what JSON cannot hold becomes its text."""
    try:
        return json.dumps(value, default=str, allow_nan=False)
    except (TypeError, ValueError):
        return json.dumps(repr(value))
