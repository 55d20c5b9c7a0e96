"""The worker process: APScheduler's BlockingScheduler with every job on its schedule.

Never double-run, never silently skip:
- APScheduler's defaults, set on purpose: `coalesce` (several missed fire times → one run),
  `max_instances=1`, and a misfire grace that fits each job (half its period, at most an hour).
- Each scheduled run carries its fire time; under the job's Postgres advisory lock it checks
  that no process already served that fire time, and records it (unique per job) — so any
  number of workers, or an old and a new release side by side, run each fire time once.
- Catch-up at start: a fire time that fell in a restart (later than the job's last run) is run
  once now, recorded as `catchup`.
- Queued requests (`trigger`, or an INSERT) arrive through `worker.listener`.

On SIGTERM the scheduler stops starting runs, the listener stops claiming, each run stops at its
next safe point and records itself interrupted, and the process exits 0 before Heroku's SIGKILL
(30 s after SIGTERM).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from typing import Any

from apscheduler.events import EVENT_SCHEDULER_STARTED
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.blocking import BlockingScheduler

from config import Settings
from worker import store
from worker.db import Database
from worker.errors import DatabaseError, ShutdownRequested, Skipped
from worker.listener import TriggerListener
from worker.logs import get_logger
from worker.migrate import migrate
from worker.registry import Job
from worker.request import RunRequest
from worker.runner import Runner
from worker.schedule import latest_fire, misfire_grace
from worker.shutdown import Shutdown

log = get_logger("nightshift.worker")

MAX_THREADS = 4
# How often the worker looks for dead runs and for runs to resume.
HOUSEKEEPING_SECONDS = 30


# Dead runs marked abandoned, and runs cut short that wait to be resumed.
Found = tuple[list[int], list[dict[str, Any]]]

# Put in a job's kwargs as `fire_time` to be handed the fire time each run serves.
FIRE_TIME = "<the fire time>"


class FireTimeExecutor(ThreadPoolExecutor):
    """Hands each scheduled run the fire time it serves (APScheduler 3 does not).

    With `coalesce`, `run_times` holds one fire time: the latest one due.
    """

    def _do_submit_job(self, job: Any, run_times: list[dt.datetime]) -> None:
        if job.kwargs.get("fire_time") == FIRE_TIME:
            job = _WithFireTime(job, run_times[-1])
        super()._do_submit_job(job, run_times)


class _WithFireTime:
    def __init__(self, job: Any, fire_time: dt.datetime) -> None:
        self._job = job
        self.kwargs = {**job.kwargs, "fire_time": fire_time}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._job, name)

    def __str__(self) -> str:
        return str(self._job)


class Worker:
    def __init__(self, settings: Settings, jobs: Mapping[str, Job]) -> None:
        self.settings = settings
        self.jobs = jobs
        self.shutdown = Shutdown()
        self.runner = Runner(settings, self.shutdown, ensure_schema=False)  # migrated at start
        threads = min(MAX_THREADS, len(jobs) + 1)  # +1: housekeeping
        self.scheduler = BlockingScheduler(
            executors={"default": FireTimeExecutor(threads)},
            job_defaults={"coalesce": True, "max_instances": 1},
            timezone="UTC",
        )
        self.listener = TriggerListener(settings, self._dispatch_queued)

    def serve(self) -> int:
        self.shutdown.install()
        self.shutdown.on_request(self._stop_scheduling)
        try:
            source, last_started, found = self._prepare()
        except ShutdownRequested:  # stopped while the database was still out of reach
            log.info("worker_stopped")
            return 0
        log.info("worker_started", database=source, jobs=sorted(self.jobs), dyno=self.settings.dyno)
        now = dt.datetime.now(dt.UTC)
        catching_up = {
            job.name
            for job in self.jobs.values()
            if self._schedule(job, last_started.get(job.name), now)
        }
        self._tidy(*found, skip=catching_up)  # a catch-up run resumes from the state anyway
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
        self.listener.close()
        self._drain()
        log.info("worker_stopped")
        return 0

    def _prepare(self) -> tuple[str, dict[str, dt.datetime], Found]:
        """At start, in one transaction: migrate, look for dead runs and runs to resume."""

        def prepare(cur: Any) -> tuple[dict[str, dt.datetime], Found]:
            migrate(cur, self.jobs.values())
            return store.last_started(cur), self._look(cur)

        with Database(self.settings, self._db_name, stop=self.shutdown.event) as db:
            last_started, found = db.run(prepare)
            return (db.resolved.describe() if db.resolved else "?"), last_started, found

    @property
    def _db_name(self) -> str:
        return f"nightshift:worker@{self.settings.dyno}"

    def _housekeeping(self) -> None:
        """Every HOUSEKEEPING_SECONDS: a crashed process's session can hold its job's lock for a
        while after the crash, so its run is only found dead once that session ends."""
        try:
            with Database(self.settings, self._db_name, stop=self.shutdown.event) as db:
                found = db.run(self._look)
        except (DatabaseError, ShutdownRequested) as exc:
            log.warning("housekeeping_failed", error=str(exc) or "shutdown")
            return
        self._tidy(*found)

    def _look(self, cur: Any) -> Found:
        return store.sweep_dead_runs(cur, self.settings.dyno), store.runs_to_resume(cur)

    def _tidy(
        self,
        abandoned: list[int],
        to_resume: list[dict[str, Any]],
        skip: set[str] | frozenset[str] = frozenset(),
    ) -> None:
        """Say which runs were found dead; resume each job's latest run if something cut it
        short (unless `skip`)."""
        if abandoned:
            log.warning("dead_runs_abandoned", runs=abandoned)
        for cut_short in to_resume:
            name = cut_short["job"]
            if name in skip or name not in self.jobs or self.runner.is_running(name):
                continue
            log.info("job_resuming", job=name, resumes=cut_short["id"])
            self.scheduler.add_job(
                self._resume,
                args=[name, cut_short["id"], cut_short["params"]],
                id=f"{name}:resume",
                name=f"{name} (resume)",
                replace_existing=True,
                misfire_grace_time=None,
            )

    def _schedule(self, job: Job, last_started: dt.datetime | None, now: dt.datetime) -> bool:
        """Put the job on its schedule; True when a missed fire time is caught up now."""
        trigger = job.trigger()
        if trigger is None:
            log.info("job_unscheduled", job=job.name)
            return False
        self.scheduler.add_job(
            self._run_job,
            trigger,
            args=[job.name, "schedule"],
            kwargs={"fire_time": FIRE_TIME},
            id=job.name,
            name=job.name,
            misfire_grace_time=misfire_grace(trigger, now),
        )
        missed = latest_fire(trigger, after=last_started, now=now) if last_started else None
        if missed is not None:
            log.info("job_catching_up", job=job.name, missed_fire_time=missed.isoformat())
            self.scheduler.add_job(
                self._run_job,
                args=[job.name, "catchup"],
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
        self.listener.start()

    def _stop_scheduling(self) -> None:
        self.listener.stop.set()
        # A signal before the scheduler runs is caught up with by `_started`.
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    # -- runs ---------------------------------------------------------------------------------
    def _run_job(self, name: str, trigger: str, fire_time: dt.datetime | None = None) -> None:
        if self.shutdown.requested:
            return
        request = RunRequest(trigger=trigger, fire_time=fire_time, queued=trigger == "queued")
        try:
            self.runner.run(self.jobs[name], request)
        except Skipped as exc:
            log.info("job_skipped", job=name, trigger=trigger, reason=str(exc))
        except Exception:
            log.exception("job_crashed", job=name)
        if trigger == "queued":
            self.listener.wake()  # more may be waiting for this job

    def _resume(self, name: str, run_id: int, params: dict[str, Any]) -> None:
        if self.shutdown.requested:
            return
        try:
            self.runner.run(self.jobs[name], RunRequest.resuming(run_id, params))
        except Skipped as exc:
            log.info("job_skipped", job=name, trigger="resume", reason=str(exc))
        except Exception:
            log.exception("job_crashed", job=name)

    def _dispatch_queued(self, name: str) -> None:
        if name not in self.jobs:
            log.warning("trigger_for_unknown_job", job=name)
            return
        if self.shutdown.requested or self.runner.is_running(name):
            return  # it runs here already; the listener will look again
        self.scheduler.add_job(
            self._run_job,
            args=[name, "queued"],
            id=f"{name}:queued",
            name=f"{name} (queued)",
            replace_existing=True,
            misfire_grace_time=None,
        )

    def _drain(self) -> None:
        """Wait for runs to stop by themselves, then record the stragglers as interrupted."""
        stragglers = self.runner.wait_idle(self.settings.shutdown_grace_seconds)
        if not stragglers:
            return
        log.warning("runs_still_busy", runs=sorted(stragglers))

        def record(cur: Any) -> None:
            for run_id in stragglers:
                store.finish_run(cur, run_id, "interrupted", "shutdown: grace period ran out")

        try:
            with Database(self.settings, self._db_name) as db:
                db.run(record, budget=3)
            for run_id, job in stragglers.items():
                log.info("job_finished", job=job, run_id=run_id, status="interrupted")
        except DatabaseError as exc:
            log.error("runs_not_recorded", error=str(exc))
        # Their threads may be blocked in I/O: leave now, their sessions die with us.
        os._exit(0)
