"""Replaying refused rows once their cause is fixed: each goes through the job's loader again
(under the job's lock, newer-wins and all); those that load leave `nightshift.rejects`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from worker.registry import Job
from worker.run.errors import JobBusy
from worker.run.loader import Loader
from worker.store import queries

# Rejects replayed in one transaction: a run keeps at most max_rejected (100 by default).
REPLAY_LIMIT = 10_000


@dataclass(frozen=True)
class Replayed:
    loaded: int
    still_refused: int


def replay_rejects(cur: Any, job: Job) -> Replayed:
    """In the caller's transaction: load the job's rejects again; forget those that load."""
    if not queries.try_lock(cur, job.name):
        raise JobBusy(f"job {job.name!r} is running; replay its rejects when it is done")
    try:
        rejects = queries.list_rejects(cur, job.name, REPLAY_LIMIT)
        loader = Loader(job)
        loaded: list[int] = []
        for reject in rejects:  # one at a time: each keeps its own verdict
            row = json.loads(reject.row)
            if not isinstance(row, dict) or loader.write_rows(cur, [row], isolate=True).refused:
                continue
            loaded.append(reject.id)
        queries.delete_rejects(cur, loaded)
        return Replayed(len(loaded), len(rejects) - len(loaded))
    finally:
        queries.unlock(cur, job.name)
