"""Dead runs and runs cut short: what a worker looks for at start and every 30 s after.

A run whose process died (SIGKILL, a dyno crash) still says `running` while its job's lock is
free: it is marked abandoned. A crashed process's session can hold the lock for a while after
the crash, so its run is only found dead once that session ends — hence the periodic look.
A job whose latest run (scheduled, catch-up, queued or resumed) was cut short is resumed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from worker.store import queries
from worker.store.records import CutShortRun

# How often the worker looks for dead runs and for runs to resume.
HOUSEKEEPING_SECONDS = 30


@dataclass(frozen=True)
class Findings:
    abandoned: list[int] = field(default_factory=list)  # dead runs just marked abandoned
    to_resume: list[CutShortRun] = field(default_factory=list)


def find_dead_and_cut_short_runs(cur: Any, dyno: str) -> Findings:
    """Mark dead runs abandoned; list each job's latest run that waits to be resumed."""
    return Findings(queries.sweep_dead_runs(cur, dyno), queries.runs_to_resume(cur))
