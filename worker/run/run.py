"""One run of one job, from the transaction that opens it to the line that reports it.

The flow of a row: the job yields it → the batch writer checks and buffers it → when the
buffer holds `batch_size` rows or `batch_max_bytes` (or the job ends) the batch goes to the
thread that writes it, while the job reads on → there the rows, the run's progress and the
job's state go to the server as ONE statement, its own transaction (`worker.run.batch`).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from structlog.contextvars import bound_contextvars

from config import Settings
from worker.alerts import send_run_alerts
from worker.database import Database, DatabaseError, DatabaseUnavailable
from worker.errors import ShutdownRequested
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
    RunError,
    Skipped,
    Unexpected,
)
from worker.run.request import RunRequest
from worker.run.rows import job_rows
from worker.run.state import StateTracker
from worker.store import queries
from worker.text import stored

if TYPE_CHECKING:  # the process's stop flag, set by signals (worker.service.shutdown)
    from worker.service.shutdown import Shutdown

log = get_logger("nightshift.run")
# How often `run --wait` tries for the job's lock.
LOCK_POLL_SECONDS = 1.0
# How long a failed or interrupted run may spend recording itself through a database outage.
FINISH_BUDGET_SECONDS = 10.0
# How many times a run loads again from what the database holds after a failover lost batches.
MAX_RELOADS = 3


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
    rejected: int = 0


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

    def execute(self, wait: bool = False, wait_until: dt.datetime | None = None) -> RunResult:
        """Run the job now. `wait`: if it runs elsewhere, wait for it; `wait_until`: wait, but
        not past this time (a fire time's misfire grace)."""
        name = f"nightshift:{self.job.name}@{self.settings.dyno}"
        with (
            bound_contextvars(job=self.job.name),
            self._database(self.settings, name, stop=self.shutdown.event) as db,
        ):
            try:
                opened = self._open(db, wait, wait_until)
            except Skipped:
                raise
            except (Exception, ShutdownRequested) as exc:
                # No run could be recorded; the log line is all there is, so make it count.
                self._end(*self._outcome(exc, "database"))
                self._report(db)
                return self.result
            with bound_contextvars(run_id=opened.run_id):
                self.result.run_id = opened.run_id
                try:
                    self._load_and_record(db, opened.state)
                finally:
                    self.active.remove(opened.run_id)
                self._report(db)
        return self.result

    def _outcome(self, exc: BaseException, cause: str) -> tuple[str, str]:
        """The status and the one-line error of a run that `exc` ended; at DEBUG, its trace."""
        if isinstance(exc, ShutdownRequested):
            return "interrupted", "shutdown requested"
        if isinstance(exc, RunError):  # ours, one line (a job's own trace: worker.run.rows)
            return "failed", exc.describe()
        log.debug("run_failed_here", exc_info=exc)
        if isinstance(exc, DatabaseError):
            return "failed", f"{cause}: {exc}"
        return "failed", Unexpected(f"{type(exc).__name__}: {exc}").describe()

    # -- loading and recording -------------------------------------------------------------------
    def _load_and_record(self, db: Database, state: dict[str, Any]) -> None:
        """Load, then record the outcome; when the database turns out to have lost batches this
        run saw commit (an asynchronous failover), load again from the state it holds."""
        reloads = 0
        while True:
            self._end("succeeded", None)
            lost: CommitsLost | None = None
            try:
                self._load(db, state)
            except CommitsLost as exc:
                lost = exc
            except (Exception, ShutdownRequested) as exc:
                self._end(*self._outcome(exc, "database"))
            if lost is None:
                try:
                    self._record(db)
                    return
                except CommitsLost as exc:  # found at the finish: the run is not done yet
                    lost = exc
            try:
                if reloads == MAX_RELOADS:
                    raise lost
                reloads += 1
                state = self._reload(db, lost, reloads)
            except (Exception, ShutdownRequested) as exc:
                self._end(*self._outcome(exc, "database"))
                self._record(db)  # a failed run's record does not insist on its batches
                return

    def _reload(self, db: Database, lost: CommitsLost, reloads: int) -> dict[str, Any]:
        """Take up the run from what the database holds: its progress and the job's state."""
        log.warning(
            "batches_lost",
            error=str(lost),
            batches_seen=self.progress.batches,
            batches_held=getattr(lost.held, "batches", 0),
            reload=reloads,
            max_reloads=MAX_RELOADS,
        )

        def held(cur: Any) -> tuple[Any, dict[str, Any]]:
            self.guard.check(cur, strict=False)  # the lock, on this session
            return queries.held_progress(cur, self.run_id), queries.load_state(cur, self.job.name)

        progress, state = db.run(held)
        if progress is None:
            raise CommitsLost("the database lost the run itself, likely in a failover")
        self.progress.rows = progress.rows
        self.progress.changed = self.progress.changed_through(progress.batches, progress.changed)
        self.progress.batches, self.progress.rejected = progress.batches, progress.rejected
        return state

    # -- opening ---------------------------------------------------------------------------------
    def _open(self, db: Database, wait: bool, wait_until: dt.datetime | None) -> Opened:
        """Open the run; while the job runs elsewhere, wait if asked to (up to `wait_until`)."""
        opening = OpenRun(self.job, self.request, self.settings.dyno, self.ensure_schema)
        said_waiting = False
        while True:
            try:
                opened = db.run(opening)
                break
            except JobBusy:
                if not wait and (wait_until is None or dt.datetime.now(dt.UTC) >= wait_until):
                    raise
                if not said_waiting:
                    log.info(
                        "job_waiting",
                        reason="the job is running elsewhere",
                        **({"until": wait_until.isoformat()} if wait_until else {}),
                    )
                    said_waiting = True
                if self.shutdown.event.wait(LOCK_POLL_SECONDS):
                    raise ShutdownRequested() from None
        self.request = opened.request
        self.run_id = opened.run_id
        self.guard = SessionGuard(db, self.job, opened.run_id, self.progress)
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
    def _load(self, db: Database, state: dict[str, Any]) -> None:
        """Drive the job's generator, writing a batch whenever the buffer is full."""
        request = self.request
        window = request.since is not None or request.until is not None
        tracker = StateTracker(self.job, state, request.full_refresh, window=window)
        batches = BatchWriter(
            db,
            self.job,
            self.run_id,
            tracker,
            self.guard,
            self.progress,
            max_rejected=self.job.rejects_allowed(),
            max_rows=self.settings.batch_size,
            max_bytes=self.settings.batch_max_bytes,
            stopping=self.shutdown.check,
        )
        ctx = Context.for_run(
            self.settings, self.job.name, self.run_id, request, tracker, self.shutdown.check
        )
        try:
            with ctx.http:
                for row in job_rows(self.job, ctx, self.shutdown):
                    if batches.add(row):
                        batches.flush(final=False)
                batches.flush(final=True)
            batches.drain()
        except BaseException as exc:
            # The batch in flight commits or fails before the run records anything. A batch
            # lost in a failover outranks what stopped the job: the run loads again.
            in_flight = batches.settle()
            if isinstance(in_flight, CommitsLost):
                raise in_flight from exc
            raise
        finally:
            batches.close()

    # -- finishing -------------------------------------------------------------------------------
    def _end(self, status: str, error: str | None) -> None:
        # Cleaned once, here: the error is stored, logged, printed and alerted as it is now (a
        # job's message may hold NUL, which a text column refuses, or half a surrogate pair).
        self.result.status, self.result.error = status, None if error is None else stored(error)

    def _record(self, db: Database) -> None:
        """Record the outcome and release the job's lock. Raises CommitsLost when a run that
        succeeded finds the database without batches it saw commit (then it is not done)."""
        result, strict = self.result, self.result.status == "succeeded"
        result.reconnects = db.reconnects

        def finish(cur: Any) -> None:
            self.guard.check(cur, strict=strict, always=strict)
            queries.finish_run(
                cur, result.run_id, result.status, result.error, result.reconnects,
                counted=(self.progress.batches, self.progress.changed),
            )  # fmt: skip
            queries.unlock(cur, self.job.name)

        # After a failure or a shutdown there is no time to ride out a long outage.
        budget = None if strict else FINISH_BUDGET_SECONDS
        try:
            # Each statement its own transaction (no BEGIN, no COMMIT: two round trips fewer):
            # a replay checks again, finds the run finished (`status = 'running'` no longer
            # matches) and unlocks; the lock is the session's, whatever the transaction.
            db.run(finish, budget=budget, single=True)
        except CommitsLost:
            raise
        except (Exception, ShutdownRequested) as exc:
            if self._refused_statement(exc) and self._record_plainly(db, exc, budget):
                return
            # The run's row stays 'running'; the next run of this job marks it abandoned.
            log.error("run_not_recorded", error=self._outcome(exc, "database")[1])

    @staticmethod
    def _refused_statement(exc: BaseException) -> bool:
        """Did the database (or the driver) refuse the finish itself, rather than being out of
        reach, taken by someone else or stopped? Then a plainer statement may still go in."""
        if isinstance(exc, ShutdownRequested | DatabaseUnavailable | RunError):
            return False
        return isinstance(exc, Exception)

    def _record_plainly(self, db: Database, exc: BaseException, budget: float | None) -> bool:
        """The second, minimal way to end the run: its status, and an error of our own words
        in place of one the database would not take. True when it went in."""
        result = self.result
        error = None
        if result.error is not None:
            error = f"{result.status}; its error could not be recorded ({type(exc).__name__})"

        def finish(cur: Any) -> None:
            queries.finish_run(cur, result.run_id, result.status, error, result.reconnects)
            queries.unlock(cur, self.job.name)

        try:
            db.run(finish, budget=budget, single=True)
        except (Exception, ShutdownRequested) as again:
            log.debug("run_not_recorded_plainly", exc_info=again)
            return False
        log.error(
            "run_recorded_plainly", status=result.status, error=self._outcome(exc, "database")[1]
        )
        return True

    def _report(self, db: Database) -> None:
        """The one canonical line of a run, and its alerts: failed, refused rows, recovered."""
        result = self.result
        result.rows, result.changed = self.progress.rows, self.progress.changed
        result.batches, result.rejected = self.progress.batches, self.progress.rejected
        result.duration = round(time.monotonic() - self._started, 3)
        fields = {
            "status": result.status,
            "rows": result.rows,
            "changed": result.changed,
            "rejected": result.rejected,
            "batches": result.batches,
            "reconnects": result.reconnects,
            "duration_s": result.duration,
        }
        if result.error:
            log.error("job_finished", **fields, error=redact(result.error))
        else:
            log.info("job_finished", **fields)
        if self.settings.alert_webhook_url:  # failed, refused rows, or recovered; never raises
            job, run_id = self.job.name, result.run_id
            send_run_alerts(
                self.settings,
                result,
                lambda budget: db.run(
                    lambda cur: queries.failed_runs_before(cur, job, run_id), budget=budget
                ),
                stop=self.shutdown.event,
            )
