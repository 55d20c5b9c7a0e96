"""What the status page reads: run history by job and status, one run in full, recent runs
per job for the plots, and the requests waiting in the queue.

Every query lives in `sql/status.sql` (named like `sql/queries.sql`); each function runs in the
caller's transaction and returns records. Nothing here writes.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from worker.store.queries import named_queries
from worker.store.records import Reject, RunRecord

# What a run's status can be (the CHECK on nightshift.runs.status).
STATUSES = ("running", "succeeded", "failed", "interrupted", "abandoned", "missed", "refused")


@dataclass(frozen=True)
class RunDetail:
    """One run in full: its record, what it was asked to do, and the request it served."""

    run: RunRecord
    params: dict[str, Any]
    scheduled_for: dt.datetime | None
    resumes: int | None  # the run it resumed
    resumed_by: int | None  # the run that resumed it
    request_id: int | None  # the queued request (nightshift.triggers) it served
    requested_by: str | None
    requested_at: dt.datetime | None


def _execute(cur: Any, name: str, params: dict[str, Any] | None = None) -> None:
    cur.execute(named_queries("status.sql")[name], params)


def recent_runs_per_job(cur: Any, per_job: int) -> dict[str, list[RunRecord]]:
    """Each job's last `per_job` runs, newest first, by job."""
    _execute(cur, "recent_runs_per_job", {"per_job": per_job})
    found: dict[str, list[RunRecord]] = defaultdict(list)
    for row in cur.fetchall():
        found[row[1]].append(RunRecord(*row))
    return dict(found)


def run_history(cur: Any, job: str | None, status: str | None, limit: int) -> list[RunRecord]:
    """The newest runs first, of one job and one status when given."""
    _execute(cur, "run_history", {"job": job, "status": status, "limit": limit})
    return [RunRecord(*row) for row in cur.fetchall()]


def run_detail(cur: Any, run_id: int) -> RunDetail | None:
    _execute(cur, "run_detail", {"run_id": run_id})
    row = cur.fetchone()
    if row is None:
        return None
    record, rest = RunRecord(*row[:13]), row[13:]
    params, scheduled_for, resumes, resumed_by, request_id, requested_by, requested_at = rest
    return RunDetail(
        record,
        dict(params),
        scheduled_for,
        resumes,
        resumed_by,
        request_id,
        requested_by,
        requested_at,
    )


def rejects_of_run(cur: Any, run_id: int, limit: int) -> list[Reject]:
    """The rows the run set aside (those not yet replayed), oldest first."""
    _execute(cur, "rejects_of_run", {"run_id": run_id, "limit": limit})
    return [Reject(*row) for row in cur.fetchall()]


def jobs_in_history(cur: Any) -> list[str]:
    _execute(cur, "jobs_in_history")
    return [row[0] for row in cur.fetchall()]
