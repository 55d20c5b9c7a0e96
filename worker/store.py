"""Bookkeeping in Postgres: run history, job state and job locks.

Every query lives in `sql/queries.sql`; this module names them and shapes their results.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

from psycopg2.extras import Json

SQL_DIR = Path(__file__).parent / "sql"
# The first key of every advisory lock Nightshift takes, so ours never meet an app's own.
LOCK_NAMESPACE = 0x4E53


@cache
def queries() -> dict[str, str]:
    """The named queries of queries.sql, loaded once."""
    text = (SQL_DIR / "queries.sql").read_text()
    parts = re.split(r"^-- name: (\w+)\s*$", text, flags=re.MULTILINE)
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


def _encode(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot save {type(value).__name__} in job state")


def jsonb(value: Any) -> Json:
    """A value for a jsonb column; dates as ISO text, decimals as strings."""
    return Json(value, dumps=lambda v: json.dumps(v, default=_encode, sort_keys=True))


def try_lock(cur: Any, job: str) -> bool:
    cur.execute(queries()["try_lock_job"], {"namespace": LOCK_NAMESPACE, "job": job})
    return bool(cur.fetchone()[0])


def unlock(cur: Any, job: str) -> None:
    cur.execute(queries()["unlock_job"], {"namespace": LOCK_NAMESPACE, "job": job})


def start_run(
    cur: Any,
    job: str,
    trigger: str,
    dyno: str,
    params: dict[str, Any],
    token: str,
    scheduled_for: dt.datetime | None = None,
    resumes: int | None = None,
) -> int:
    cur.execute(
        queries()["start_run"],
        {
            "job": job,
            "trigger": trigger,
            "dyno": dyno,
            "pid": os.getpid(),
            "params": jsonb(params),
            "token": token,
            "scheduled_for": scheduled_for,
            "resumes": resumes,
        },
    )
    return int(cur.fetchone()[0])


def abandon_dead_runs(cur: Any, job: str, run_id: int | None, found_by: str) -> list[int]:
    """Mark the job's other 'running' runs abandoned. Call only while holding its lock."""
    cur.execute(
        queries()["abandon_dead_runs"], {"job": job, "run_id": run_id, "found_by": found_by}
    )
    return [row[0] for row in cur.fetchall()]


def sweep_dead_runs(cur: Any, dyno: str) -> list[int]:
    """At start: every run marked running whose job lock is free has died. Mark it abandoned."""
    cur.execute(queries()["jobs_with_running_runs"])
    abandoned: list[int] = []
    for (job,) in cur.fetchall():
        if try_lock(cur, job):
            abandoned += abandon_dead_runs(cur, job, None, f"a worker starting on {dyno}")
            unlock(cur, job)
    return abandoned


def load_state(cur: Any, job: str) -> dict[str, Any]:
    cur.execute(queries()["load_state"], {"job": job})
    row = cur.fetchone()
    return dict(row[0]) if row else {}


def save_progress(
    cur: Any,
    run_id: int,
    job: str,
    state: dict[str, Any] | None,
    rows: int,
    changed: int,
    batches: int,
) -> None:
    """Record a batch's effect. Runs inside the batch's transaction."""
    cur.execute(
        queries()["save_progress"],
        {"run_id": run_id, "rows": rows, "changed": changed, "batches": batches},
    )
    if state is not None:
        cur.execute(queries()["save_state"], {"job": job, "state": jsonb(state), "run_id": run_id})


def run_batches(cur: Any, run_id: int) -> int | None:
    """How many batches the database holds for this run (None: it does not know the run)."""
    cur.execute(queries()["run_batches"], {"run_id": run_id})
    row = cur.fetchone()
    return None if row is None else int(row[0])


def finish_run(cur: Any, run_id: int, status: str, error: str | None, reconnects: int = 0) -> None:
    cur.execute(
        queries()["finish_run"],
        {"run_id": run_id, "status": status, "error": error, "reconnects": reconnects},
    )


RUN_FIELDS = (
    "id", "job", "trigger", "status", "rows", "changed", "batches", "reconnects",
    "started_at", "finished_at", "error", "dyno",
)  # fmt: skip


def recent_runs(cur: Any, job: str | None, limit: int) -> list[dict[str, Any]]:
    cur.execute(queries()["recent_runs"], {"job": job, "limit": limit})
    return [dict(zip(RUN_FIELDS, row, strict=True)) for row in cur.fetchall()]


def last_runs(cur: Any) -> dict[str, dict[str, Any]]:
    cur.execute(queries()["last_runs"])
    fields = ("job", "id", "status", "started_at", "finished_at", "rows", "error", "dyno")
    return {row[0]: dict(zip(fields, row, strict=True)) for row in cur.fetchall()}


def server_facts(cur: Any) -> dict[str, Any]:
    cur.execute(queries()["server_facts"])
    version, ssl, in_recovery, read_only, database = cur.fetchone()
    return {
        "server_version": version,
        "ssl": bool(ssl),
        "in_recovery": bool(in_recovery),
        "read_only": bool(in_recovery or read_only),
        "database": database,
    }


# -- scheduling and triggers -------------------------------------------------------------------
def ran_for_fire_time(cur: Any, job: str, fire_time: dt.datetime) -> int | None:
    """The run that already served this fire time, if any. Call under the job's lock."""
    cur.execute(queries()["ran_for_fire_time"], {"job": job, "fire_time": fire_time})
    row = cur.fetchone()
    return row[0] if row else None


def last_started(cur: Any) -> dict[str, dt.datetime]:
    cur.execute(queries()["last_started"])
    return dict(cur.fetchall())


def running_now(cur: Any) -> dict[str, dict[str, Any]]:
    """Runs in progress anywhere, by job: run id, dyno, started_at."""
    cur.execute(queries()["running_now"], {"namespace": LOCK_NAMESPACE})
    return {
        job: {"id": run_id, "dyno": dyno, "started_at": started}
        for job, run_id, dyno, started in cur.fetchall()
    }


def sync_jobs(cur: Any, jobs: list[dict[str, Any]], retire_others: bool) -> None:
    cur.execute(queries()["sync_jobs"], {"jobs": json.dumps(jobs), "retire_others": retire_others})


def enqueue_trigger(
    cur: Any,
    job: str,
    params: dict[str, str],
    full_refresh: bool,
    since: dt.date | None,
    until: dt.date | None,
    requested_by: str,
) -> int:
    cur.execute(
        queries()["enqueue_trigger"],
        {
            "job": job,
            "params": jsonb(params),
            "full_refresh": full_refresh,
            "since": since,
            "until": until,
            "requested_by": requested_by,
        },
    )
    return int(cur.fetchone()[0])


def pending_trigger_jobs(cur: Any) -> list[str]:
    cur.execute(queries()["pending_trigger_jobs"])
    return [row[0] for row in cur.fetchall()]


def claim_trigger(cur: Any, job: str, dyno: str) -> dict[str, Any] | None:
    """Claim the job's oldest pending request (under its lock); None when there is none."""
    cur.execute(queries()["claim_trigger"], {"job": job, "dyno": dyno})
    return _trigger(cur.fetchone())


def trigger_of_run(cur: Any, run_id: int) -> dict[str, Any] | None:
    cur.execute(queries()["trigger_of_run"], {"run_id": run_id})
    return _trigger(cur.fetchone())


def run_by_token(cur: Any, token: str) -> int | None:
    cur.execute(queries()["run_by_token"], {"token": token})
    row = cur.fetchone()
    return row[0] if row else None


def _trigger(row: tuple | None) -> dict[str, Any] | None:
    if row is None:
        return None
    trigger_id, params, full_refresh, since, until = row
    return {
        "id": trigger_id,
        "params": dict(params),
        "full_refresh": full_refresh,
        "since": since,
        "until": until,
    }


def link_trigger(cur: Any, trigger_id: int, run_id: int) -> None:
    cur.execute(queries()["link_trigger"], {"trigger_id": trigger_id, "run_id": run_id})


# -- resuming runs cut short ---------------------------------------------------------------------
def runs_to_resume(cur: Any) -> list[dict[str, Any]]:
    cur.execute(queries()["runs_to_resume"])
    return [{"job": job, "id": run_id, "params": dict(params)} for job, run_id, params in cur]


def resumed_by(cur: Any, run_id: int) -> int | None:
    """Who resumed the run already (None: nobody). Call under the job's lock."""
    cur.execute(queries()["claim_resume"], {"run_id": run_id})
    row = cur.fetchone()
    return row[0] if row else None


def mark_resumed(cur: Any, run_id: int, by: int) -> None:
    cur.execute(queries()["mark_resumed"], {"run_id": run_id, "by": by})
