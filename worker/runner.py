"""One run of one job: lock, record, drive the generator in batches, record the outcome.

The flow of a row: the job yields it → it joins the batch buffer → when the buffer holds
`batch_size` rows (or the job ends) the loader writes them, the run's progress and the job's
state in ONE transaction → commit. A run killed at any point leaves only whole batches, each
with the state that describes it, so a rerun loses nothing and doubles nothing.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from structlog.contextvars import bound_contextvars

from config import Settings
from worker import store
from worker.alerts import send_failure_alert
from worker.context import Context
from worker.db import Database
from worker.errors import (
    AlreadyDone,
    DatabaseError,
    DatabaseUnavailable,
    JobBusy,
    JobFailed,
    NightshiftError,
    ShutdownRequested,
    Skipped,
    SourceError,
)
from worker.http import Session
from worker.loader import BadRow, Loader
from worker.logs import get_logger
from worker.migrate import migrate
from worker.redact import redact
from worker.registry import Job
from worker.request import RunRequest
from worker.shutdown import Shutdown
from worker.state import StateTracker

log = get_logger("nightshift.run")
# How often `run --wait` tries for the job's lock.
LOCK_POLL_SECONDS = 1.0
# How long a failed or interrupted run may spend recording itself through a database outage.
FINISH_BUDGET_SECONDS = 10.0


class LockLost(NightshiftError):
    """The job's lock went to another process while this run was reconnecting."""


class CommitsLost(NightshiftError):
    """The database no longer holds batches this run saw commit."""


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


@dataclass
class _Progress:
    rows: int = 0
    changed: int = 0
    batches: int = 0
    buffer: list[Mapping[str, Any]] = field(default_factory=list)


def _from_trigger(request: RunRequest, claimed: Mapping[str, Any]) -> RunRequest:
    return replace(
        request,
        params=claimed["params"],
        full_refresh=claimed["full_refresh"],
        since=claimed["since"],
        until=claimed["until"],
        trigger_id=claimed["id"],
    )


class Runner:
    """Runs jobs. One instance serves a process; each run gets its own database session."""

    def __init__(
        self,
        settings: Settings,
        shutdown: Shutdown | None = None,
        database: Callable[..., Database] = Database,
        ensure_schema: bool = True,
    ) -> None:
        """`ensure_schema`: make sure the job's tables exist as each run starts (a one-off `run`
        on a fresh database); the worker migrates once at start instead."""
        self.settings = settings
        self.shutdown = shutdown or Shutdown()
        self._database = database
        self._ensure_schema = ensure_schema
        self.active: dict[int, str] = {}  # run id -> job, for the worker's shutdown
        self._active_lock = threading.Condition()

    def is_running(self, job: str) -> bool:
        with self._active_lock:
            return job in self.active.values()

    def wait_idle(self, timeout: float) -> dict[int, str]:
        """Wait up to `timeout` s for every run to end; return those still going."""
        with self._active_lock:
            self._active_lock.wait_for(lambda: not self.active, timeout)
            return dict(self.active)

    def run(self, job: Job, request: RunRequest | None = None, wait: bool = False) -> RunResult:
        """Run `job` now. Raises Skipped (JobBusy when it runs elsewhere and `wait` is false,
        AlreadyDone when another process served the same fire time or request); otherwise
        returns the result and never raises."""
        request = request or RunRequest()
        started = time.monotonic()
        name = f"nightshift:{job.name}@{self.settings.dyno}"
        with (
            bound_contextvars(job=job.name),
            self._database(self.settings, name, stop=self.shutdown.event) as db,
        ):
            try:
                run_id, request, saved = self._begin(db, job, request, wait)
            except Skipped:
                raise
            except (DatabaseError, ShutdownRequested) as exc:
                # No run could be recorded; the log line is all there is, so make it count.
                if isinstance(exc, ShutdownRequested):
                    result = RunResult(job.name, "interrupted", error="shutdown requested")
                else:
                    result = RunResult(job.name, "failed", error=f"database: {exc}")
                result.duration = round(time.monotonic() - started, 3)
                self._log_finished(result)
                self._alert(result)
                return result
            with bound_contextvars(run_id=run_id):
                result = RunResult(job=job.name, status="succeeded", run_id=run_id)
                progress = _Progress()
                db.on_connect(lambda cur: self._verify(cur, run_id, progress))
                try:
                    self._drive(db, job, run_id, saved, request, progress)
                except ShutdownRequested:
                    result.status, result.error = "interrupted", "shutdown requested"
                except JobFailed as exc:
                    result.status, result.error = "failed", str(exc)
                result.rows, result.changed = progress.rows, progress.changed
                result.batches, result.reconnects = progress.batches, db.reconnects
                result.duration = round(time.monotonic() - started, 3)
                self._finish(db, job, result)
        return result

    # -- the run ------------------------------------------------------------------------------
    def _begin(
        self, db: Database, job: Job, request: RunRequest, wait: bool
    ) -> tuple[int, RunRequest, dict[str, Any]]:
        token = str(uuid.uuid4())

        def begin(cur: Any) -> tuple[int, RunRequest, list[int], dict[str, Any]]:
            if self._ensure_schema:
                migrate(cur, [job], every_job=False)
            if not store.try_lock(cur, job.name):
                raise JobBusy(f"job {job.name!r} is already running elsewhere")
            mine = store.run_by_token(cur, token)
            if mine is not None:  # a replay after a COMMIT whose answer was lost: it is ours
                return mine, self._reclaim(cur, request, mine), [], store.load_state(cur, job.name)
            try:
                final = self._claim(cur, job, request)
            except AlreadyDone:
                store.unlock(cur, job.name)
                raise
            run_id = store.start_run(
                cur, job.name, final.trigger, self.settings.dyno, final.recorded_params(),
                token, final.fire_time, final.resumes,
            )  # fmt: skip
            if final.trigger_id is not None:
                store.link_trigger(cur, final.trigger_id, run_id)
            if final.resumes is not None:
                store.mark_resumed(cur, final.resumes, run_id)
            abandoned = store.abandon_dead_runs(cur, job.name, run_id, f"run {run_id}")
            return run_id, final, abandoned, store.load_state(cur, job.name)

        said_waiting = False
        while True:
            try:
                run_id, request, abandoned, saved = db.run(begin)
                break
            except JobBusy:
                if not wait:
                    raise
                if not said_waiting:
                    log.info("job_waiting", reason="the job is running elsewhere")
                    said_waiting = True
                if self.shutdown.event.wait(LOCK_POLL_SECONDS):
                    raise ShutdownRequested() from None
        db.on_connect(lambda cur: self._relock(cur, job))
        with self._active_lock:
            self.active[run_id] = job.name
        log.info(
            "job_started",
            run_id=run_id,
            trigger=request.trigger,
            database=db.resolved.describe() if db.resolved else None,
            **({"params": request.recorded_params()} if request.recorded_params() else {}),
            **({"fire_time": request.fire_time.isoformat()} if request.fire_time else {}),
            **({"resumes": request.resumes} if request.resumes else {}),
            **({"abandoned_runs": abandoned} if abandoned else {}),
        )
        return run_id, request, saved

    def _claim(self, cur: Any, job: Job, request: RunRequest) -> RunRequest:
        """Under the job's lock: skip a fire time already served, or a run already resumed;
        take a queued request."""
        if request.resumes is not None:
            by = store.resumed_by(cur, request.resumes)
            if by is not None:
                raise AlreadyDone(f"run {by} already resumed run {request.resumes}")
        if request.fire_time is not None:
            served_by = store.ran_for_fire_time(cur, job.name, request.fire_time)
            if served_by is not None:
                raise AlreadyDone(
                    f"run {served_by} already served the fire time {request.fire_time.isoformat()}"
                )
        if not request.queued:
            return request
        claimed = store.claim_trigger(cur, job.name, self.settings.dyno)
        if claimed is None:
            raise AlreadyDone("no queued request left for it (another worker took it)")
        return _from_trigger(request, claimed)

    @staticmethod
    def _reclaim(cur: Any, request: RunRequest, run_id: int) -> RunRequest:
        """The request as the first attempt claimed it (a queued one is linked to the run)."""
        claimed = store.trigger_of_run(cur, run_id) if request.queued else None
        return request if claimed is None else _from_trigger(request, claimed)

    @staticmethod
    def _verify(cur: Any, run_id: int, progress: _Progress) -> None:
        """On a new session: does the database still hold every batch we saw commit?

        A failover to an asynchronous replica can lose the last commits. The state is still
        consistent with the rows (same transactions), so a rerun reloads what was lost — but
        this run cannot, its rows are gone from memory. Say so instead of carrying on.
        """
        held = store.run_batches(cur, run_id)
        if held is None or held < progress.batches:
            raise CommitsLost(
                f"the database lost {progress.batches - (held or 0)} committed batch(es),"
                " likely in a failover; its state matches its rows, so a rerun reloads them"
            )

    @staticmethod
    def _relock(cur: Any, job: Job) -> None:
        """On a new session: take the job's lock again, or stop — someone else runs it now."""
        if not store.try_lock(cur, job.name):
            raise LockLost("lost the job's lock to another process while reconnecting")

    def _drive(
        self,
        db: Database,
        job: Job,
        run_id: int,
        saved: dict[str, Any],
        request: RunRequest,
        progress: _Progress,
    ) -> None:
        tracker = StateTracker(job, saved, request.full_refresh)
        loader = Loader(job)
        ctx = Context(
            job=job.name,
            run_id=run_id,
            http=Session(self.settings, before_request=self.shutdown.check),
            log=get_logger(f"jobs.{job.name}"),
            params=dict(request.params),
            full_refresh=request.full_refresh,
            since=request.since,
            until=request.until,
            _state=tracker,
        )
        with ctx.http:
            for row in self._rows(job, ctx):
                tracker.observe(row)
                progress.buffer.append(row)
                if len(progress.buffer) >= self.settings.batch_size:
                    self._flush(db, job, loader, tracker, run_id, progress, final=False)
            self._flush(db, job, loader, tracker, run_id, progress, final=True)

    def _rows(self, job: Job, ctx: Context) -> Iterator[Mapping[str, Any]]:
        """The job's rows one by one, pages flattened; its failures made one-line errors."""
        generator = job.function(ctx)
        try:
            while True:
                self.shutdown.check()
                try:
                    with self.shutdown.interruptible():
                        item = next(generator)
                except StopIteration:
                    return
                except SourceError as exc:
                    raise JobFailed(job.name, "source", str(exc)) from exc
                except Exception as exc:
                    raise JobFailed(job.name, "job", f"{type(exc).__name__}: {exc}") from exc
                if isinstance(item, Mapping):
                    yield item
                elif isinstance(item, list | tuple):
                    yield from item
                else:
                    raise JobFailed(
                        job.name, "job", f"yielded a {type(item).__name__}; yield dicts or lists"
                    )
        finally:
            generator.close()

    def _flush(
        self,
        db: Database,
        job: Job,
        loader: Loader,
        tracker: StateTracker,
        run_id: int,
        progress: _Progress,
        final: bool,
    ) -> None:
        rows = progress.buffer
        state = tracker.for_batch(final=final)
        if not rows and state is None:
            return

        def write(cur: Any) -> tuple[int, int]:
            written, changed = loader.write(cur, rows)
            store.save_progress(
                cur,
                run_id,
                job.name,
                state,
                rows=progress.rows + written,
                changed=progress.changed + changed,
                batches=progress.batches + 1,
            )
            return written, changed

        try:
            written, changed = db.run(write)
        except LockLost as exc:
            raise JobFailed(job.name, "lock", str(exc)) from exc
        except CommitsLost as exc:
            raise JobFailed(job.name, "database", str(exc)) from exc
        except BadRow as exc:
            raise JobFailed(job.name, "bad row", str(exc)) from exc
        except DatabaseUnavailable as exc:
            raise JobFailed(job.name, "database", str(exc)) from exc
        except DatabaseError as exc:
            raise JobFailed(job.name, "load", f"{exc} (batch {progress.batches + 1})") from exc
        tracker.committed(state)
        progress.rows += written
        progress.changed += changed
        progress.batches += 1
        progress.buffer = []
        log.debug("batch_committed", batch=progress.batches, rows=written, changed=changed)

    def _finish(self, db: Database, job: Job, result: RunResult) -> None:
        def finish(cur: Any) -> None:
            store.finish_run(cur, result.run_id, result.status, result.error, result.reconnects)
            store.unlock(cur, job.name)

        # After a failure or a shutdown there is no time to ride out a long outage.
        budget = None if result.status == "succeeded" else FINISH_BUDGET_SECONDS
        try:
            db.run(finish, budget=budget)
        except (DatabaseError, LockLost, CommitsLost, ShutdownRequested) as exc:
            # The run's row stays 'running'; the next run of this job marks it abandoned.
            log.error("run_not_recorded", error=str(exc))
        finally:
            with self._active_lock:
                self.active.pop(result.run_id, None)
                self._active_lock.notify_all()
        self._log_finished(result)
        self._alert(result)

    def _alert(self, result: RunResult) -> None:
        if result.status == "failed" and self.settings.alert_webhook_url:
            send_failure_alert(self.settings, result)

    @staticmethod
    def _log_finished(result: RunResult) -> None:
        """The one canonical line of a run."""
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
