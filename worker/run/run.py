"""One run of one job, from the transaction that opens it to the line that reports it.

The flow of a row: the job yields it → the batch writer buffers it → when the buffer holds
`batch_size` rows (or the job ends) the batch is written with the run's progress and the job's
state in ONE transaction (`worker.run.batch`) → COMMIT.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from structlog.contextvars import bound_contextvars

from config import Settings
from worker.alerts import send_failure_alert
from worker.database import Database, DatabaseError
from worker.errors import ShutdownRequested, SourceError
from worker.http import Session
from worker.logs import get_logger
from worker.redact import redact
from worker.registry import Job
from worker.run.active import ActiveRuns
from worker.run.batch import BatchWriter, Progress, SessionGuard
from worker.run.begin import Opened, OpenRun
from worker.run.context import Context
from worker.run.errors import (
    CommitsLost,
    JobBusy,
    JobCodeFailed,
    LockLost,
    RunError,
    SourceFailed,
)
from worker.run.request import RunRequest
from worker.run.state import StateTracker
from worker.store import queries

if TYPE_CHECKING:  # the process's stop flag, set by signals (worker.service.shutdown)
    from worker.service.shutdown import Shutdown

log = get_logger("nightshift.run")
# How often `run --wait` tries for the job's lock.
LOCK_POLL_SECONDS = 1.0
# How long a failed or interrupted run may spend recording itself through a database outage.
FINISH_BUDGET_SECONDS = 10.0


@dataclass
class RunResult:
    job: str
    status: str  # succeeded | failed | interrupted
    run_id: int | None = None
    rows: int = 0
    changed: int = 0
    batches: int = 0
    reconnects: int = 0
    error: str | None = None
    duration: float = 0.0


class Run:
    """One run: its session, request, state tracker, batch writer and progress live here.

    `execute()` raises `Skipped` when the run does not start (JobBusy when the job runs
    elsewhere and `wait` is false, AlreadyDone when another process served the same fire time,
    resume or request); otherwise it returns the result and never raises.
    """

    def __init__(
        self,
        settings: Settings,
        job: Job,
        request: RunRequest,
        shutdown: Shutdown,
        active: ActiveRuns | None = None,
        ensure_schema: bool = True,
        database: Callable[..., Database] = Database,
    ) -> None:
        """`ensure_schema`: make sure the job's tables exist as the run starts (a one-off `run`
        on a fresh database); the worker migrates once at start instead."""
        self.settings = settings
        self.job = job
        self.request = request
        self.shutdown = shutdown
        self.active = active or ActiveRuns()
        self.ensure_schema = ensure_schema
        self._database = database
        self.result = RunResult(job.name, "succeeded")
        self.progress = Progress()
        self._started = time.monotonic()

    def execute(self, wait: bool = False) -> RunResult:
        name = f"nightshift:{self.job.name}@{self.settings.dyno}"
        with (
            bound_contextvars(job=self.job.name),
            self._database(self.settings, name, stop=self.shutdown.event) as db,
        ):
            try:
                opened = self._open(db, wait)
            except (DatabaseError, ShutdownRequested) as exc:
                # No run could be recorded; the log line is all there is, so make it count.
                if isinstance(exc, ShutdownRequested):
                    self._end("interrupted", "shutdown requested")
                else:
                    self._end("failed", f"database: {exc}")
                self._report()
                return self.result
            with bound_contextvars(run_id=opened.run_id):
                self.result.run_id = opened.run_id
                try:
                    self._load(db, opened)
                except ShutdownRequested:
                    self._end("interrupted", "shutdown requested")
                except RunError as exc:
                    self._end("failed", exc.describe())
                self.result.reconnects = db.reconnects
                self._finish(db)
        return self.result

    # -- opening ---------------------------------------------------------------------------------
    def _open(self, db: Database, wait: bool) -> Opened:
        """Open the run; with `wait`, try again until the job's lock is free."""
        opening = OpenRun(self.job, self.request, self.settings.dyno, self.ensure_schema)
        said_waiting = False
        while True:
            try:
                opened = db.run(opening)
                break
            except JobBusy:
                if not wait:
                    raise
                if not said_waiting:
                    log.info("job_waiting", reason="the job is running elsewhere")
                    said_waiting = True
                if self.shutdown.event.wait(LOCK_POLL_SECONDS):
                    raise ShutdownRequested() from None
        self.request = opened.request
        self.active.add(opened.run_id, self.job.name)
        request = opened.request
        log.info(
            "job_started",
            run_id=opened.run_id,
            trigger=request.kind,
            database=db.resolved.describe() if db.resolved else None,
            **({"params": request.recorded_params()} if request.recorded_params() else {}),
            **({"fire_time": request.fire_time.isoformat()} if request.fire_time else {}),
            **({"resumes": request.resumes} if request.resumes else {}),
            **({"abandoned_runs": opened.abandoned} if opened.abandoned else {}),
        )
        return opened

    # -- loading ---------------------------------------------------------------------------------
    def _load(self, db: Database, opened: Opened) -> None:
        """Drive the job's generator, writing a batch whenever the buffer is full."""
        tracker = StateTracker(self.job, opened.state, self.request.full_refresh)
        self.guard = SessionGuard(db, self.job, opened.run_id, self.progress)
        batches = BatchWriter(db, self.job, opened.run_id, tracker, self.guard, self.progress)
        ctx = Context(
            job=self.job.name,
            run_id=opened.run_id,
            http=Session(self.settings, before_request=self.shutdown.check),
            log=get_logger(f"jobs.{self.job.name}"),
            params=dict(self.request.params),
            full_refresh=self.request.full_refresh,
            since=self.request.since,
            until=self.request.until,
            _state=tracker,
        )
        with ctx.http:
            for row in self._rows(ctx):
                if batches.add(row) >= self.settings.batch_size:
                    batches.flush(final=False)
            batches.flush(final=True)

    def _rows(self, ctx: Context) -> Iterator[Mapping[str, Any]]:
        """The job's rows one by one, pages flattened; its failures made one-line errors."""
        generator = self.job.function(ctx)
        try:
            while True:
                self.shutdown.check()
                try:
                    with self.shutdown.interruptible():
                        item = next(generator)
                except StopIteration:
                    return
                except SourceError as exc:
                    raise SourceFailed(str(exc)) from exc
                except Exception as exc:
                    raise JobCodeFailed(f"{type(exc).__name__}: {exc}") from exc
                if isinstance(item, Mapping):
                    yield item
                elif isinstance(item, list | tuple):
                    yield from item
                else:
                    raise JobCodeFailed(f"yielded a {type(item).__name__}; yield dicts or lists")
        finally:
            generator.close()

    # -- finishing -------------------------------------------------------------------------------
    def _end(self, status: str, error: str | None) -> None:
        self.result.status, self.result.error = status, error

    def _finish(self, db: Database) -> None:
        """Record the outcome and release the job's lock; then report."""
        result, guard = self.result, getattr(self, "guard", None)

        def finish(cur: Any) -> None:
            if guard is not None:
                guard.check(cur)
            queries.finish_run(cur, result.run_id, result.status, result.error, result.reconnects)
            queries.unlock(cur, self.job.name)

        # After a failure or a shutdown there is no time to ride out a long outage.
        budget = None if result.status == "succeeded" else FINISH_BUDGET_SECONDS
        try:
            db.run(finish, budget=budget)
        except (DatabaseError, LockLost, CommitsLost, ShutdownRequested) as exc:
            # The run's row stays 'running'; the next run of this job marks it abandoned.
            log.error("run_not_recorded", error=str(exc))
        finally:
            self.active.remove(result.run_id)
        self._report()

    def _report(self) -> None:
        """The one canonical line of a run, and an alert when it failed."""
        result = self.result
        result.rows, result.changed = self.progress.rows, self.progress.changed
        result.batches = self.progress.batches
        result.duration = round(time.monotonic() - self._started, 3)
        fields = {
            "status": result.status,
            "rows": result.rows,
            "changed": result.changed,
            "batches": result.batches,
            "reconnects": result.reconnects,
            "duration_s": result.duration,
        }
        if result.error:
            log.error("job_finished", **fields, error=redact(result.error))
        else:
            log.info("job_finished", **fields)
        if result.status == "failed" and self.settings.alert_webhook_url:
            send_failure_alert(self.settings, result)
