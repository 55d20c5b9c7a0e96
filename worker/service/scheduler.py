"""APScheduler's BlockingScheduler, set up so that a run knows the fire time it serves.

APScheduler's defaults, set on purpose: `coalesce` (several missed fire times → one run) and
`max_instances=1`; each job gets a misfire grace that fits it (`cron.misfire_grace`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.blocking import BlockingScheduler

# Put in a job's kwargs as `fire_time` to be handed the fire time each run serves.
FIRE_TIME = "<the fire time>"


def make_scheduler(threads: int) -> BlockingScheduler:
    return BlockingScheduler(
        executors={"default": FireTimeExecutor(threads)},
        job_defaults={"coalesce": True, "max_instances": 1},
        timezone="UTC",
    )


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
