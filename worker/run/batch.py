"""Where a batch is written: its rows, the run's progress and the job's state, one transaction.

A run killed at any point leaves only whole batches, each with the state that describes it,
so a rerun loses nothing and doubles nothing. A batch replayed after a fault writes the same
rows again (upsert on the key) and the same absolute totals: it counts once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from worker.database import Database, DatabaseError, DatabaseUnavailable
from worker.logs import get_logger
from worker.registry import Job
from worker.run.errors import CommitsLost, DatabaseLost, LoadFailed, LockLost
from worker.run.loader import Loader
from worker.run.state import StateTracker
from worker.store import queries

log = get_logger("nightshift.run")


@dataclass
class Progress:
    """What the run's committed batches wrote so far."""

    rows: int = 0
    changed: int = 0
    batches: int = 0


class SessionGuard:
    """Checks, at the start of each of the run's transactions on a session it has not seen,
    that the run may carry on there: it takes the job's lock again (or stops: someone else runs
    the job now), and the database still holds every batch it saw commit.

    A failover to an asynchronous replica can lose the last commits. The state is still
    consistent with the rows (same transactions), so a rerun reloads what was lost — but this
    run cannot, its rows are gone from memory: it says so instead of carrying on.
    """

    def __init__(self, db: Database, job: Job, run_id: int, progress: Progress) -> None:
        self.db = db
        self.job = job
        self.run_id = run_id
        self.progress = progress
        self._checked = db.sessions  # the session that opened the run holds the lock

    def check(self, cur: Any) -> None:
        if self.db.sessions == self._checked:
            return
        if not queries.try_lock(cur, self.job.name):
            raise LockLost("lost the job's lock to another process while reconnecting")
        held = queries.run_batches(cur, self.run_id)
        if held is None or held < self.progress.batches:
            raise CommitsLost(
                f"the database lost {self.progress.batches - (held or 0)} committed batch(es),"
                " likely in a failover; its state matches its rows, so a rerun reloads them"
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
    ) -> None:
        self.db = db
        self.job = job
        self.run_id = run_id
        self.tracker = tracker
        self.guard = guard
        self.progress = progress
        self.loader = Loader(job)
        self.buffer: list[Mapping[str, Any]] = []

    def add(self, row: Mapping[str, Any]) -> int:
        """Take one row; returns how many rows wait for the next batch."""
        self.tracker.observe(row)
        self.buffer.append(row)
        return len(self.buffer)

    def flush(self, final: bool) -> None:
        """Write the buffered rows with the state they reach; `final`: the job has ended."""
        rows = self.buffer
        state = self.tracker.for_batch(final=final)
        if not rows and state is None:
            return
        progress = self.progress

        def write(cur: Any) -> tuple[int, int]:
            self.guard.check(cur)
            written, changed = self.loader.write(cur, rows)
            queries.save_progress(
                cur,
                self.run_id,
                self.job.name,
                state,
                rows=progress.rows + written,
                changed=progress.changed + changed,
                batches=progress.batches + 1,
            )
            return written, changed

        try:
            written, changed = self.db.run(write)
        except DatabaseUnavailable as exc:
            raise DatabaseLost(str(exc)) from exc
        except DatabaseError as exc:
            raise LoadFailed(f"{exc} (batch {progress.batches + 1})") from exc
        self.tracker.committed(state)
        progress.rows += written
        progress.changed += changed
        progress.batches += 1
        self.buffer = []
        log.debug("batch_committed", batch=progress.batches, rows=written, changed=changed)
