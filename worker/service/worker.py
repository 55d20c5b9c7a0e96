"""The long-running worker (`python -m worker`): every job on its schedule, queued requests,
housekeeping, and a graceful stop.

Never double-run, never silently skip:
- each scheduled run carries its fire time; under the job's Postgres advisory lock it checks
  that no process already served that fire time, and records it (unique per job) — so any
  number of workers, or an old and a new release side by side, run each fire time once;
- catch-up at start: a fire time that fell in a restart (later than the job's last run) is run
  once now, recorded as `catchup`;
- queued requests (`trigger`, or an INSERT) arrive through `worker.service.queue`;
- runs cut short by a shutdown or a crash are resumed (`worker.service.housekeeping`);
- a request or a resume no run can serve is settled once as a `refused` run: one log line
  (`request_refused`), one alert, and the job's next requests run.

On SIGTERM the scheduler stops starting runs, the queue watcher stops claiming, each run stops
at its next safe point and records itself interrupted, and the process exits 0 before Heroku's
SIGKILL (30 s after SIGTERM).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from typing import Any

from apscheduler.events import EVENT_SCHEDULER_STARTED

from config import Settings
from worker.alerts import send_refused_alert
from worker.database import Database, DatabaseError
from worker.errors import ShutdownRequested
from worker.logs import get_logger
from worker.registry import Job
from worker.run.active import ActiveRuns
from worker.run.errors import JobBusy, Skipped
from worker.run.refusals import Refusal
from worker.run.request import CATCHUP, QUEUED, SCHEDULE, RunRequest
from worker.run.run import FINISH_BUDGET_SECONDS, Run
from worker.service.cron import latest_fire, misfire_grace
from worker.service.housekeeping import (
    HOUSEKEEPING_SECONDS,
    Findings,
    find_dead_and_cut_short_runs,
)
from worker.service.queue import QueueWatcher
from worker.service.scheduler import FIRE_TIME, make_scheduler
from worker.service.shutdown import Shutdown
from worker.store import queries
from worker.store.migrate import Migrated, migrate

log = get_logger("nightshift.worker")

# Threads for runs: a scheduled run may wait for its job's lock while a queued or resumed run
# of the same job holds it, and housekeeping needs one too.
MAX_THREADS = 16


class Worker:
    def __init__(self, settings: Settings, jobs: Mapping[str, Job]) -> None:
        self.settings = settings
        self.jobs = jobs
        self.shutdown = Shutdown()
        self.active = ActiveRuns()
        self.scheduler = make_scheduler(min(MAX_THREADS, 2 * len(jobs) + 2))
        self.grace: dict[str, int] = {}  # each job's misfire grace, in seconds
        self.queue = QueueWatcher(settings, self._schedule_queued_run, self._refused, jobs)

    def serve(self) -> int:
        self.shutdown.install()
        self.shutdown.on_request(self._stop_scheduling)
        try:
            started = self._migrate_and_find_runs()
        except ShutdownRequested:  # stopped while the database was still out of reach
            log.info("worker_stopped")
            return 0
        if started is None:  # migrate refused: the tables differ from the declarations
            log.info("worker_stopped")
            return 1
        source, last_started, found = started
        log.info("worker_started", database=source, jobs=sorted(self.jobs), dyno=self.settings.dyno)
        now = dt.datetime.now(dt.UTC)
        catching_up = {
            job.name
            for job in self.jobs.values()
            if self._put_on_schedule(job, last_started.get(job.name), now)
        }
        # A catch-up run resumes from the saved state anyway.
        self._resume_cut_short(found, skip=catching_up)
        self.scheduler.add_job(
            self._housekeeping,
            "interval",
            seconds=HOUSEKEEPING_SECONDS,
            id="nightshift:housekeeping",
            name="dead runs and runs to resume",
        )
        self.scheduler.add_listener(lambda _event: self._started(), EVENT_SCHEDULER_STARTED)
        if not self.shutdown.requested:
            self.scheduler.start()  # blocks until shutdown
        self.queue.close()
        self._drain()
        log.info("worker_stopped")
        return 0

    # -- start -----------------------------------------------------------------------------------
    def _migrate_and_find_runs(self) -> tuple[str, dict[str, dt.datetime], Findings] | None:
        """At start, in one transaction: migrate, look for dead runs and runs to resume.
        None when migrate refused (each reason logged as `migrate_refused`, as `migrate`
        prints it): the worker does not start over tables that differ from their jobs."""

        def prepare(cur: Any) -> tuple[Migrated, dict[str, dt.datetime], Findings | None]:
            done = migrate(cur, self.jobs.values(), job_migrations_dir=self.settings.migrations_dir)
            if done.refused:
                return done, {}, None
            return done, queries.last_started(cur), self._find_runs(cur)

        with Database(self.settings, self._db_name, stop=self.shutdown.event) as db:
            done, last_started, found = db.run(prepare)
            source = db.resolved.describe() if db.resolved else "?"
        if found is None:
            file = done.suggested_file  # where a migration would resolve them
            for difference in done.refused:
                log.error("migrate_refused", error=str(difference), fix=difference.fix, file=file)
            return None
        return source, last_started, found

    def _put_on_schedule(
        self, job: Job, last_started: dt.datetime | None, now: dt.datetime
    ) -> bool:
        """Put the job on its schedule; True when a missed fire time is caught up now."""
        cron = job.cron_trigger()
        if cron is None:
            log.info("job_unscheduled", job=job.name)
            return False
        self.grace[job.name] = misfire_grace(cron, now)
        self.scheduler.add_job(
            self._run_job,
            cron,
            args=[job.name, SCHEDULE],
            kwargs={"fire_time": FIRE_TIME},
            id=job.name,
            name=job.name,
            misfire_grace_time=self.grace[job.name],
        )
        missed = latest_fire(cron, after=last_started, now=now) if last_started else None
        if missed is not None:
            log.info("job_catching_up", job=job.name, missed_fire_time=missed.isoformat())
            self.scheduler.add_job(
                self._run_job,
                args=[job.name, CATCHUP],
                kwargs={"fire_time": missed},
                id=f"{job.name}:catchup",
                name=f"{job.name} (catch-up)",
                misfire_grace_time=None,
            )
        return missed is not None

    def _started(self) -> None:
        if self.shutdown.requested:  # the signal came while we were starting
            self.scheduler.shutdown(wait=False)
            return
        for scheduled in self.scheduler.get_jobs():
            if scheduled.id not in self.jobs:
                continue
            job, fire = self.jobs[scheduled.id], scheduled.next_run_time
            log.info(
                "job_scheduled",
                job=job.name,
                schedule=job.schedule_in_force(),
                timezone=job.timezone,
                next_run_at=fire.isoformat() if fire else None,
            )
        self.queue.start()

    # -- housekeeping ----------------------------------------------------------------------------
    @property
    def _db_name(self) -> str:
        return f"nightshift:worker@{self.settings.dyno}"

    def _housekeeping(self) -> None:
        try:
            with Database(self.settings, self._db_name, stop=self.shutdown.event) as db:
                found = db.run(self._find_runs)
        except (DatabaseError, ShutdownRequested) as exc:
            log.warning("housekeeping_failed", error=str(exc) or "shutdown")
            return
        self._resume_cut_short(found)

    def _find_runs(self, cur: Any) -> Findings:
        return find_dead_and_cut_short_runs(cur, self.settings.dyno)

    def _resume_cut_short(
        self, found: Findings, skip: set[str] | frozenset[str] = frozenset()
    ) -> None:
        """Say which runs were found dead, and which could not be resumed; resume each job's
        latest run if something cut it short (unless `skip`)."""
        if found.abandoned:
            log.warning("dead_runs_abandoned", runs=found.abandoned)
        for refusal in found.refused:
            self._refused(refusal)
        for name, request in found.to_resume.items():
            if name in skip or name not in self.jobs or self.active.is_running(name):
                continue
            log.info("job_resuming", job=name, resumes=request.resumes)
            self.scheduler.add_job(
                self._resume,
                args=[name, request],
                id=f"{name}:resume",
                name=f"{name} (resume)",
                replace_existing=True,
                misfire_grace_time=None,
            )

    # -- runs ------------------------------------------------------------------------------------
    def _run_job(self, name: str, kind: str, fire_time: dt.datetime | None = None) -> None:
        if self.shutdown.requested:
            return
        self._execute(name, RunRequest(kind=kind, fire_time=fire_time))
        if kind == QUEUED:
            self.queue.wake()  # more may be waiting for this job

    def _resume(self, name: str, request: RunRequest) -> None:
        if self.shutdown.requested:
            return
        self._execute(name, request)

    def _refused(self, refusal: Refusal) -> None:
        """A request or a resume settled as refused: its one line, and its one alert (in a
        thread of the scheduler's, as a run's are: a slow webhook holds no loop)."""
        log.error(
            "request_refused", job=refusal.job, run_id=refusal.run_id, error=refusal.error,
            **({"request_id": refusal.request_id} if refusal.request_id else {}),
            **({"resumes": refusal.resumes} if refusal.resumes else {}),
        )  # fmt: skip
        if self.settings.alert_webhook_url:
            self.scheduler.add_job(
                send_refused_alert,
                args=[self.settings, refusal, self.shutdown.event],
                name=f"alert: run {refusal.run_id} refused",
                misfire_grace_time=None,
            )

    def _execute(self, name: str, request: RunRequest) -> None:
        run = Run(
            self.settings,
            self.jobs[name],
            request,
            self.shutdown,
            self.active,
            ensure_schema=False,  # migrated at start
        )
        # A fire time that finds its job busy waits for it, within its misfire grace.
        wait_until = self._grace_ends(name, request)
        try:
            run.execute(wait_until=wait_until)
        except JobBusy as exc:
            if wait_until is None or request.fire_time is None:
                log.info("job_skipped", job=name, trigger=request.kind, reason=str(exc))
            else:
                self._record_missed(name, request.fire_time, wait_until)
        except Skipped as exc:
            log.info("job_skipped", job=name, trigger=request.kind, reason=str(exc))
        except Exception:
            log.exception("job_crashed", job=name)

    def _grace_ends(self, name: str, request: RunRequest) -> dt.datetime | None:
        if request.fire_time is None:
            return None
        grace = dt.timedelta(seconds=self.grace.get(name, 0))
        # A catch-up's fire time is long past: it gets the grace from now.
        start = dt.datetime.now(dt.UTC) if request.kind == CATCHUP else request.fire_time
        return start + grace

    def _record_missed(self, name: str, fire_time: dt.datetime, gave_up: dt.datetime) -> None:
        reason = (
            f"the job was running elsewhere from its fire time until its misfire grace ran out"
            f" ({gave_up.isoformat()})"
        )
        try:
            with Database(self.settings, self._db_name, stop=self.shutdown.event) as db:
                missed = db.run(
                    lambda cur: queries.record_missed_fire_time(
                        cur, name, fire_time, self.settings.dyno, reason
                    ),
                    budget=FINISH_BUDGET_SECONDS,
                )
        except (DatabaseError, ShutdownRequested) as exc:
            log.error("fire_time_missed", job=name, fire_time=fire_time.isoformat(), error=str(exc))
            return
        if missed is None:
            log.info("job_skipped", job=name, reason="another process served the fire time")
        else:
            log.error(
                "fire_time_missed", job=name, fire_time=fire_time.isoformat(), run_id=missed,
                reason=reason,
            )  # fmt: skip

    def _schedule_queued_run(self, name: str) -> None:
        if name not in self.jobs:
            log.warning("trigger_for_unknown_job", job=name)
            return
        if self.shutdown.requested or self.active.is_running(name):
            return  # it runs here already; the queue watcher will look again
        self.scheduler.add_job(
            self._run_job,
            args=[name, QUEUED],
            id=f"{name}:queued",
            name=f"{name} (queued)",
            replace_existing=True,
            misfire_grace_time=None,
        )

    # -- stop ------------------------------------------------------------------------------------
    def _stop_scheduling(self) -> None:
        self.queue.stop.set()
        # A signal before the scheduler runs is caught up with by `_started`.
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    def _drain(self) -> None:
        """Wait for runs to stop by themselves, then record the stragglers as interrupted."""
        stragglers = self.active.wait_idle(self.settings.shutdown_grace_seconds)
        if not stragglers:
            return
        log.warning("runs_still_busy", runs=sorted(stragglers))

        def record(cur: Any) -> None:
            for run_id in stragglers:
                queries.finish_run(cur, run_id, "interrupted", "shutdown: grace period ran out")

        try:
            with Database(self.settings, self._db_name) as db:
                db.run(record, budget=3)
            for run_id, job in stragglers.items():
                log.info("job_finished", job=job, run_id=run_id, status="interrupted")
        except DatabaseError as exc:
            log.error("runs_not_recorded", error=str(exc))
        # Their threads may be blocked in I/O: leave now, their sessions die with us.
        os._exit(0)
