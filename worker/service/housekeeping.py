"""Dead runs and runs cut short: what a worker looks for at start and every 30 s after.

A run whose process died (SIGKILL, a dyno crash) still says `running` while its job's lock is
free: it is marked abandoned. A crashed process's session can hold the lock for a while after
the crash, so its run is only found dead once that session ends — hence the periodic look.
A job whose latest run (scheduled, catch-up, queued or resumed) was cut short is resumed;
one whose recorded parameters no run can take (a since that is not a date, say) is settled
once as a refused resume instead of being offered again every 30 s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from worker.run.errors import RequestRefused
from worker.run.refusals import Refusal, refuse_resume
from worker.run.request import RunRequest, resume_request
from worker.store import queries

# How often the worker looks for dead runs and for runs to resume.
HOUSEKEEPING_SECONDS = 30


@dataclass(frozen=True)
class Findings:
    abandoned: list[int] = field(default_factory=list)  # dead runs just marked abandoned
    to_resume: dict[str, RunRequest] = field(default_factory=dict)  # by job
    refused: list[Refusal] = field(default_factory=list)  # runs cut short that cannot resume


def find_dead_and_cut_short_runs(cur: Any, dyno: str) -> Findings:
    """Mark dead runs abandoned; for each job's latest run that waits to be resumed, the
    request that resumes it, or its settlement when no run can take what it recorded."""
    found = Findings(queries.sweep_dead_runs(cur, dyno))
    for cut_short in queries.runs_to_resume(cur):
        try:
            found.to_resume[cut_short.job] = resume_request(cut_short)
        except RequestRefused as exc:
            refusal = refuse_resume(cur, cut_short, str(exc), dyno)
            if refusal is not None:
                found.refused.append(refusal)
    return found
