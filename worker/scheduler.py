"""The worker process: APScheduler's BlockingScheduler with every job on its schedule.

Jobs run in a small thread pool, one run per job at a time (`max_instances=1`); missed fire
times within the grace window collapse into one run (`coalesce`). On SIGTERM the scheduler
stops starting runs, each run stops at its next safe point and records itself interrupted,
and the process exits 0 before Heroku's SIGKILL (30 s after SIGTERM).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from apscheduler.events import EVENT_SCHEDULER_STARTED
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.blocking import BlockingScheduler

from config import Settings
from worker import store
from worker.db import Database
from worker.errors import DatabaseError, JobBusy
from worker.logs import get_logger
from worker.migrate import migrate
from worker.registry import Job
from worker.runner import Runner
from worker.schedule import effective_schedule
from worker.shutdown import Shutdown

log = get_logger("nightshift.worker")

MAX_THREADS = 4
# A fire time missed by up to this much (the process was busy or restarting) still runs.
MISFIRE_GRACE_SECONDS = 300


class Worker:
    def __init__(self, settings: Settings, jobs: Mapping[str, Job]) -> None:
        self.settings = settings
        self.jobs = jobs
        self.shutdown = Shutdown()
        self.runner = Runner(settings, self.shutdown)
        self.scheduler = BlockingScheduler(
            executors={"default": ThreadPoolExecutor(max(1, min(MAX_THREADS, len(jobs))))},
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": MISFIRE_GRACE_SECONDS,
            },
            timezone="UTC",
        )

    def serve(self) -> int:
        self.shutdown.install()
        self.shutdown.on_request(self._stop_scheduling)

        def prepare(cur: Any) -> list[int]:
            migrate(cur, self.jobs.values())
            return store.sweep_dead_runs(cur, self.settings.dyno)

        name = f"nightshift:worker@{self.settings.dyno}"
        with Database(self.settings, name, stop=self.shutdown.event) as db:
            abandoned = db.run(prepare)
            source = db.resolved.describe() if db.resolved else "?"
        log.info("worker_started", database=source, jobs=sorted(self.jobs), dyno=self.settings.dyno)
        if abandoned:
            log.warning("dead_runs_abandoned", runs=abandoned)
        for job in self.jobs.values():
            trigger = job.trigger()
            if trigger is None:
                log.info("job_unscheduled", job=job.name)
                continue
            self.scheduler.add_job(
                self._run_scheduled, trigger, args=[job.name], id=job.name, name=job.name
            )
        self.scheduler.add_listener(lambda _event: self._started(), EVENT_SCHEDULER_STARTED)
        if not self.shutdown.requested:
            self.scheduler.start()  # blocks until shutdown
        self._drain()
        log.info("worker_stopped")
        return 0

    def _stop_scheduling(self) -> None:
        # A signal before the scheduler runs is caught up with by `_started`.
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    def _started(self) -> None:
        if self.shutdown.requested:  # the signal came while we were starting
            self.scheduler.shutdown(wait=False)
            return
        self._log_schedule()

    def _log_schedule(self) -> None:
        for scheduled in self.scheduler.get_jobs():
            job = self.jobs[scheduled.id]
            fire = scheduled.next_run_time
            log.info(
                "job_scheduled",
                job=job.name,
                schedule=effective_schedule(job.name, job.schedule, os.environ),
                timezone=job.timezone,
                next_run_at=fire.isoformat() if fire else None,
            )

    def _run_scheduled(self, name: str) -> None:
        if self.shutdown.requested:
            return
        try:
            self.runner.run(self.jobs[name], trigger="schedule")
        except JobBusy as exc:
            log.info("job_skipped", job=name, reason=str(exc))
        except Exception:
            log.exception("job_crashed", job=name)

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
            with Database(self.settings, f"nightshift:worker@{self.settings.dyno}") as db:
                db.run(record, budget=3)
            for run_id, job in stragglers.items():
                log.info("job_finished", job=job, run_id=run_id, status="interrupted")
        except DatabaseError as exc:
            log.error("runs_not_recorded", error=str(exc))
        # Their threads may be blocked in I/O: leave now, their sessions die with us.
        os._exit(0)
