"""The worker's side of the queue of run requests (`nightshift.triggers`): claiming a request
for a run, and settling once what no run can serve (a `refused` run, with its reason).

Every query lives in `sql/claims.sql` (named like `sql/queries.sql`); each function runs in the
caller's transaction. Requests are read as text (`StoredRequest`): no row can make the driver
fail, and `worker.run.request` decides whether a run can take it.
"""

from __future__ import annotations

import os
from typing import Any

from worker.store.queries import as_jsonb, named_queries
from worker.store.records import StoredRequest


def _execute(cur: Any, name: str, params: dict[str, Any] | None = None) -> None:
    cur.execute(named_queries("claims.sql")[name], params)


def _stored(row: tuple | None) -> StoredRequest | None:
    return None if row is None else StoredRequest(*row)


def claim_request(cur: Any, job: str, dyno: str) -> StoredRequest | None:
    """Claim the job's oldest pending request (under its lock); None when there is none."""
    _execute(cur, "claim_request", {"job": job, "dyno": dyno})
    return _stored(cur.fetchone())


def request_of_run(cur: Any, run_id: int) -> StoredRequest | None:
    """The queued request a run claimed, if it claimed one."""
    _execute(cur, "request_of_run", {"run_id": run_id})
    return _stored(cur.fetchone())


def link_request(
    cur: Any, request_id: int, run_id: int, masked: dict[str, str] | None = None
) -> None:
    """Link the claimed request to its run. `masked`: the parameters to keep in its place (a
    credential's value cleared), None to keep them as they are."""
    params = None if masked is None else as_jsonb(masked)
    _execute(cur, "link_request", {"request_id": request_id, "run_id": run_id, "params": params})


def oldest_pending_requests(cur: Any) -> list[StoredRequest]:
    """Each job's oldest pending request (the one its next run would claim), oldest first."""
    _execute(cur, "oldest_pending_requests")
    return [StoredRequest(*row) for row in cur.fetchall()]


def refuse_request(
    cur: Any, request_id: int, reason: str, dyno: str, masked: dict[str, str] | None = None
) -> int | None:
    """Settle a pending request no run can serve: a `refused` run with `reason`, the request
    marked refused and linked to it (`masked`: as in `link_request`). The run's id, or None
    when the request is no longer pending (another worker claimed or settled it)."""
    params = None if masked is None else as_jsonb(masked)
    args = {"request_id": request_id, "reason": reason, "dyno": dyno, "params": params}
    _execute(cur, "refuse_request", {**args, "pid": os.getpid()})
    row = cur.fetchone()
    return None if row is None else int(row[0])


def refuse_resume(cur: Any, run_id: int, reason: str, dyno: str) -> int | None:
    """Settle a run cut short that cannot be resumed as it was asked: a `refused` resume with
    `reason`, which the run names as its `resumed_by`. Its id, or None when the run was
    resumed or settled already."""
    args = {"resumes": run_id, "reason": reason, "dyno": dyno, "pid": os.getpid()}
    _execute(cur, "refuse_resume", args)
    row = cur.fetchone()
    return None if row is None else int(row[0])
