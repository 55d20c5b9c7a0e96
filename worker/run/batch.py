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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from worker.database import Database, DatabaseError, DatabaseUnavailable, RowsRefused
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
from worker.run.loader import Checked, Loader, Refusal, Written
from worker.run.state import StateTracker
from worker.store import queries

log = get_logger("nightshift.run")


@dataclass
class Progress:
    """What the run's committed batches wrote so far."""

    rows: int = 0
    changed: int = 0
    batches: int = 0
    rejected: int = 0


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


class BatchWriter:
    """Buffers a run's rows and writes them a batch at a time."""

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
    ) -> None:
        self.db = db
        self.job = job
        self.run_id = run_id
        self.tracker = tracker
        self.guard = guard
        self.progress = progress
        self.max_rejected = max_rejected
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.loader = Loader(job)
        self.buffer: list[Checked] = []
        self.buffered_bytes = 0
        self.refused: list[Refusal] = []  # refused before the INSERT, saved with the next batch

    def add(self, row: Any) -> bool:
        """Take one row (checked now, or refused); True when the batch is full: flush it."""
        checked = admit(self.loader, self.tracker, row)
        if isinstance(checked, Refusal):
            self.refused.append(checked)
            return False
        self.buffer.append(checked)
        self.buffered_bytes += checked.size
        return len(self.buffer) >= self.max_rows or self.buffered_bytes >= self.max_bytes

    def flush(self, final: bool) -> None:
        """Write the buffered rows with the state they reach; `final`: the job has ended."""
        rows, early = self.buffer, self.refused
        state = self.tracker.for_batch(final=final)
        if not rows and not early and state is None:
            return
        progress, number = self.progress, self.progress.batches + 1

        def write(cur: Any, isolate: bool) -> tuple[Written, list[Refusal]]:
            self.guard.check(cur)
            written = self.loader.write(cur, rows, isolate=isolate)
            refused = early + written.refused
            rejected = progress.rejected + len(refused)
            if rejected > self.max_rejected:
                raise self._too_many(refused[-1], rejected, number)
            for refusal in refused:
                self._save_reject(cur, refusal)
            queries.save_progress(
                cur,
                self.run_id,
                self.job.name,
                state,
                rows=progress.rows + written.rows,
                changed=progress.changed + written.changed,
                batches=number,
                rejected=rejected,
            )
            return written, refused

        try:
            try:
                written, refused = self.db.run(lambda cur: write(cur, isolate=False))
            except RowsRefused:  # the database refused some rows: set them apart
                written, refused = self.db.run(lambda cur: write(cur, isolate=True))
        except DatabaseUnavailable as exc:
            raise DatabaseLost(str(exc)) from exc
        except DatabaseError as exc:
            raise LoadFailed(f"{exc} (batch {number})") from exc
        self.tracker.committed(state)
        progress.rows += written.rows
        progress.changed += written.changed
        progress.batches = number
        progress.rejected += len(refused)
        self.buffer, self.buffered_bytes, self.refused = [], 0, []
        for refusal in refused:
            log.warning("row_rejected", batch=number, key=self._key(refusal), error=refusal.error)
        log.debug("batch_committed", batch=number, rows=written.rows, changed=written.changed)

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

    def _save_reject(self, cur: Any, refusal: Refusal) -> None:
        row = refusal.row
        document = _as_json(dict(row) if isinstance(row, Mapping) else repr(row))
        queries.save_reject(
            cur, self.job.name, self.run_id, self._key(refusal), document, refusal.error
        )


def admit(loader: Loader, tracker: StateTracker, row: Any) -> Checked | Refusal:
    """A row checked against the declaration, its cursor noted; or why it is refused."""
    try:
        checked = loader.check(row)
        tracker.observe(row)
    except Unconvertible as exc:
        return Refusal(row, f"cursor column {loader.job.cursor!r}: {exc}", False)
    except ValueError as exc:
        return Refusal(row, str(exc), False)
    return checked


def _as_json(value: Any) -> str:
    """JSON text for anything a job yields: what JSON cannot hold becomes its text."""
    try:
        return json.dumps(value, default=str, allow_nan=False)
    except (TypeError, ValueError):
        return json.dumps(repr(value))
