"""Bookkeeping in Postgres: run history, job state, job locks and the queue of run requests.

Every query lives in `sql/queries.sql`; this module names them and returns records
(`worker.store.records`). Each function runs in the caller's transaction.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import uuid
from collections.abc import Callable
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from worker.database import sql
from worker.database.sql import jsonb
from worker.store.records import (
    CutShortRun,
    Enqueued,
    HeldProgress,
    LastRun,
    Reject,
    RunningRun,
    RunRecord,
    ServerFacts,
)

T = TypeVar("T")
SQL_DIR = Path(__file__).parent / "sql"
# The first key of every advisory lock Nightshift takes, so ours never meet an app's own.
LOCK_NAMESPACE = 0x4E53


@cache
def named_queries(file: str) -> dict[str, str]:
    """The named queries of `sql/<file>` (`-- name: x` starts query x), loaded once."""
    text = (SQL_DIR / file).read_text()
    parts = re.split(r"^-- name: (\w+)\s*$", text, flags=re.MULTILINE)
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


def _execute(cur: Any, name: str, params: dict[str, Any] | None = None) -> None:
    cur.execute(named_queries("queries.sql")[name], params)


def _encode(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    raise TypeError(f"cannot save {type(value).__name__} in job state")


def as_jsonb(value: Any) -> Any:
    """A value for a jsonb column; dates as ISO text, decimals as strings."""
    return jsonb(value, default=_encode)


# -- job locks -----------------------------------------------------------------------------------
def try_lock(cur: Any, job: str) -> bool:
    """Take the job's session-level advisory lock if it is free."""
    _execute(cur, "try_lock_job", {"namespace": LOCK_NAMESPACE, "job": job})
    return bool(cur.fetchone()[0])


def unlock(cur: Any, job: str) -> None:
    _execute(cur, "unlock_job", {"namespace": LOCK_NAMESPACE, "job": job})


# -- one run's record ------------------------------------------------------------------------------
def start_run(
    cur: Any,
    job: str,
    kind: str,
    dyno: str,
    params: dict[str, Any],
    token: str,
    scheduled_for: dt.datetime | None = None,
    resumes: int | None = None,
) -> int:
    """Record a run as started; idempotent on `token` (a replay returns the same id)."""
    _execute(
        cur,
        "start_run",
        {
            "job": job,
            "kind": kind,
            "dyno": dyno,
            "pid": os.getpid(),
            "params": as_jsonb(params),
            "token": token,
            "scheduled_for": scheduled_for,
            "resumes": resumes,
        },
    )
    return int(cur.fetchone()[0])


def run_by_token(cur: Any, token: str) -> int | None:
    _execute(cur, "run_by_token", {"token": token})
    row = cur.fetchone()
    return row[0] if row else None


def save_progress(
    cur: Any,
    run_id: int,
    job: str,
    state: dict[str, Any] | None,
    rows: int,
    changed: int,
    batches: int,
    rejected: int = 0,
) -> None:
    """Record a batch's effect. Runs inside the batch's transaction."""
    counts = {"rows": rows, "changed": changed, "batches": batches, "rejected": rejected}
    _execute(cur, "save_progress", {"run_id": run_id, **counts})
    if state is not None:
        _execute(cur, "save_state", {"job": job, "state": as_jsonb(state), "run_id": run_id})


def batch_statement(
    rows: sql.Composable | None,
    run_id: int,
    job: str,
    state: dict[str, Any] | None,
    rows_total: int,
    changed_before: int,
    batches: int,
    rejected: int,
) -> sql.Composable:
    """One statement writing a batch: `rows` (an INSERT, or None), the run's progress and the
    job's state (None: unchanged). Its row count is the rows the INSERT changed."""
    return sql.SQL(named_queries("queries.sql")["save_batch"]).format(
        rows=rows if rows is not None else sql.SQL("SELECT WHERE false"),
        rows_total=sql.Literal(rows_total),
        changed_before=sql.Literal(changed_before),
        batches=sql.Literal(batches),
        rejected=sql.Literal(rejected),
        run_id=sql.Literal(run_id),
        job=sql.Literal(job),
        state=sql.Literal(as_jsonb(state or {})),
        save_state=sql.Literal(state is not None),
    )


def save_reject(
    cur: Any,
    job: str,
    run_id: int | None,
    key: str | None,
    row: str,
    error: str,
    held: str | None = None,
) -> None:
    """Keep a refused row (`key`, `row` and `held` as JSON text; `held`: what the table held
    for its key then, None when unknown). In the batch's transaction."""
    params = {"job": job, "run_id": run_id, "key": key, "row": row, "error": error}
    _execute(cur, "save_reject", {**params, "held": held})


def list_rejects(cur: Any, job: str | None, limit: int) -> list[Reject]:
    _execute(cur, "list_rejects", {"job": job, "limit": limit})
    return [Reject(*row) for row in cur.fetchall()]


def delete_rejects(cur: Any, ids: list[int]) -> None:
    _execute(cur, "delete_rejects", {"ids": ids})


def held_progress(cur: Any, run_id: int) -> HeldProgress | None:
    """What the database holds of the run's progress (None: it does not know the run)."""
    _execute(cur, "run_progress", {"run_id": run_id})
    row = cur.fetchone()
    return None if row is None else HeldProgress(*row)


def finish_run(
    cur: Any,
    run_id: int,
    status: str,
    error: str | None,
    reconnects: int = 0,
    counted: tuple[int, int] | None = None,
) -> None:
    """`counted`: (batches, changed) as the run saw them commit; the changed rows are recorded
    if the database holds those batches."""
    batches, changed = counted or (None, None)
    params = {"run_id": run_id, "status": status, "error": error, "reconnects": reconnects}
    _execute(cur, "finish_run", {**params, "batches": batches, "changed": changed})


def load_state(cur: Any, job: str) -> dict[str, Any]:
    """The job's saved state (a JSON object), or {} before its first batch."""
    _execute(cur, "load_state", {"job": job})
    row = cur.fetchone()
    return dict(row[0]) if row else {}


# -- dead runs -------------------------------------------------------------------------------------
def abandon_dead_runs(cur: Any, job: str, run_id: int | None, found_by: str) -> list[int]:
    """Mark the job's other 'running' runs abandoned. Call only while holding its lock."""
    _execute(cur, "abandon_dead_runs", {"job": job, "run_id": run_id, "found_by": found_by})
    return [row[0] for row in cur.fetchall()]


def sweep_dead_runs(cur: Any, dyno: str) -> list[int]:
    """Every run marked running whose job lock is free has died: mark it abandoned."""
    _execute(cur, "jobs_with_running_runs")
    abandoned: list[int] = []
    for (job,) in cur.fetchall():
        if try_lock(cur, job):
            abandoned += abandon_dead_runs(cur, job, None, f"a worker starting on {dyno}")
            unlock(cur, job)
    return abandoned


# -- what operators read ---------------------------------------------------------------------------
def recent_runs(cur: Any, job: str | None, limit: int) -> list[RunRecord]:
    _execute(cur, "recent_runs", {"job": job, "limit": limit})
    return [RunRecord(*row) for row in cur.fetchall()]


def last_runs(cur: Any) -> dict[str, LastRun]:
    """Each job's most recent run, by job."""
    _execute(cur, "last_runs")
    return {row[0]: LastRun(*row) for row in cur.fetchall()}


def running_now(cur: Any) -> dict[str, RunningRun]:
    """Runs in progress anywhere, by job."""
    _execute(cur, "running_now", {"namespace": LOCK_NAMESPACE})
    return {row[0]: RunningRun(*row) for row in cur.fetchall()}


def bookkeeping_exists(cur: Any) -> bool:
    _execute(cur, "bookkeeping_exists")
    return bool(cur.fetchone()[0])


def once_migrated(work: Callable[[Any], T], empty: T) -> Callable[[Any], T]:
    """A read for `Database.run`: `work`, or `empty` before the first `migrate` (nothing to
    show yet, rather than an error about a missing table)."""

    def read(cur: Any) -> T:
        return work(cur) if bookkeeping_exists(cur) else empty

    return read


def migrations_applied(cur: Any) -> int:
    """How many numbered migrations the database has (0 before the first `migrate`)."""
    _execute(cur, "migrations_table_exists")
    if not cur.fetchone()[0]:
        return 0
    _execute(cur, "migrations_applied")
    return int(cur.fetchone()[0])


def server_facts(cur: Any) -> ServerFacts:
    _execute(cur, "server_facts")
    version, ssl, in_recovery, read_only, database = cur.fetchone()
    return ServerFacts(
        server_version=version,
        ssl=bool(ssl),
        in_recovery=bool(in_recovery),
        read_only=bool(in_recovery or read_only),
        database=database,
    )


# -- scheduling ------------------------------------------------------------------------------------
def ran_for_fire_time(cur: Any, job: str, fire_time: dt.datetime) -> int | None:
    """The run that already served this fire time, if any. Call under the job's lock."""
    _execute(cur, "ran_for_fire_time", {"job": job, "fire_time": fire_time})
    row = cur.fetchone()
    return row[0] if row else None


def record_missed_fire_time(
    cur: Any, job: str, fire_time: dt.datetime, dyno: str, reason: str
) -> int | None:
    """Record that nobody ran the fire time; None when a run served it after all."""
    _execute(
        cur,
        "record_missed_fire_time",
        {"job": job, "fire_time": fire_time, "dyno": dyno, "pid": os.getpid(), "reason": reason},
    )
    row = cur.fetchone()
    return row[0] if row else None


def last_started(cur: Any) -> dict[str, dt.datetime]:
    """When each job's latest run started."""
    _execute(cur, "last_started")
    return dict(cur.fetchall())


def sync_jobs(cur: Any, jobs: list[dict[str, Any]], retire_others: bool) -> None:
    _execute(cur, "sync_jobs", {"jobs": json.dumps(jobs), "retire_others": retire_others})


# -- the queue of run requests (`nightshift.triggers`) ---------------------------------------------
# Queueing them; claiming and refusing them is the worker's side: worker.store.claims.
def request_run(
    cur: Any,
    job: str,
    params: dict[str, str],
    full_refresh: bool,
    since: dt.date | None,
    until: dt.date | None,
    requested_by: str,
) -> Enqueued:
    """Queue a request, or join the identical one still pending (same job, params,
    full_refresh, since and until; not claimed yet): then no new run is queued."""
    _execute(
        cur,
        "enqueue_request",
        {
            "job": job,
            "params": as_jsonb(params),
            "full_refresh": full_refresh,
            "since": since,
            "until": until,
            "requested_by": requested_by,
        },
    )
    row = cur.fetchone()
    if row is not None:
        return Enqueued(row[0], row[1], joined=False)
    _execute(cur, "joined_request")
    joined = cur.fetchone()
    if joined is None:  # only a trigger of someone else's could skip the INSERT so
        raise RuntimeError(f"the request to run {job} was neither queued nor joined")
    return Enqueued(joined[0], joined[1], joined=True)


# -- resuming runs cut short -----------------------------------------------------------------------
def runs_to_resume(cur: Any) -> list[CutShortRun]:
    _execute(cur, "runs_to_resume")
    return [CutShortRun(*row) for row in cur.fetchall()]


def resumed_by(cur: Any, run_id: int) -> int | None:
    """Who resumed the run already (None: nobody). Call under the job's lock."""
    _execute(cur, "resumed_by", {"run_id": run_id})
    row = cur.fetchone()
    return row[0] if row else None


def mark_resumed(cur: Any, run_id: int, by: int) -> None:
    _execute(cur, "mark_resumed", {"run_id": run_id, "by": by})


# -- alerts ----------------------------------------------------------------------------------------
def failed_runs_before(cur: Any, job: str, run_id: int) -> int:
    """How many of the job's runs failed in a row before `run_id`, since its last success (runs
    of a job start in id order, under its lock). 0: none failed since."""
    _execute(cur, "failed_runs_before", {"job": job, "run_id": run_id})
    return int(cur.fetchone()[0])
