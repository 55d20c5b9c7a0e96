"""Refused rows, kept aside and replayed once their cause is fixed — never back in time.

When a row is refused, what stood in the job's table for its key is kept with it (`held`: the
stored row, or its absence). A replay goes through the job's loader again (under the job's
lock, newer-wins and all), but only for a key whose stored row is still what it was: a key a
later run has written since is *superseded* — reported and removed, never written back over
the newer value. Of several rejects of one key, the latest is the one replayed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from worker.database import RowsRefused, sql
from worker.registry import Job
from worker.run.errors import JobBusy
from worker.run.loader import Loader
from worker.store import queries

# Rejects replayed in one transaction: a run keeps at most max_rejected (100 by default).
REPLAY_LIMIT = 10_000
# `held` for a key no row had.
ABSENT = "null"


@dataclass(frozen=True)
class Replayed:
    loaded: int
    still_refused: int
    superseded: list[tuple[int, str | None]] = field(default_factory=list)  # (id, key JSON)


def held_now(cur: Any, job: Job, row: Any) -> str | None:
    """What the job's table holds for `row`'s key, as JSON text: the stored row, or ABSENT;
    None when it cannot be told (no key, or one the column's type cannot hold). In the
    caller's transaction, which a refused lookup does not abort."""
    if not isinstance(row, Mapping):
        return None
    key = [row.get(name) for name in job.key]
    if any(value is None or isinstance(value, dict | list) for value in key):
        return None
    columns = sql.SQL(", ").join(map(sql.Identifier, job.key))
    values = sql.SQL(", ").join(  # CAST, not ::, which binds before a negative number's minus
        sql.SQL("CAST(%s AS {})").format(sql.SQL(job.columns[name])) for name in job.key
    )
    statement = sql.SQL("SELECT to_jsonb(t)::text FROM {} AS t WHERE ({}) = ({})").format(
        sql.Identifier(job.schema, job.table), columns, values
    )
    try:
        found = sql.fetch_refusable(cur, statement, key)
    except RowsRefused:
        return None
    return ABSENT if found is None else found[0]


def unchanged(held: str, now: str) -> bool:
    """Does the table still hold for a key what it held when the row was refused? Compared by
    value on the columns both have (a migration may add or drop one, or widen a type: 1.50
    stored as numeric(10,2) is still 1.5000 as numeric(12,4))."""
    before, after = _parse(held), _parse(now)
    if before is None or after is None:
        return before is None and after is None
    if not isinstance(before, dict) or not isinstance(after, dict):
        return before == after
    return all(before[name] == after[name] for name in before.keys() & after.keys())


def _parse(text: str) -> Any:
    return json.loads(text, parse_float=Decimal)


def replay_rejects(cur: Any, job: Job) -> Replayed:
    """In the caller's transaction: load the job's rejects again; forget those that load and
    those a later run superseded."""
    if not queries.try_lock(cur, job.name):
        raise JobBusy(f"job {job.name!r} is running; replay its rejects when it is done")
    try:
        rejects = queries.list_rejects(cur, job.name, REPLAY_LIMIT)
        latest = {reject.key: reject.id for reject in rejects if reject.key is not None}
        loader = Loader(job)
        loaded: list[int] = []
        superseded: list[tuple[int, str | None]] = []
        for reject in rejects:  # one at a time: each keeps its own verdict
            row = json.loads(reject.row)
            if not isinstance(row, dict):
                continue
            if reject.key is not None and latest[reject.key] != reject.id:
                superseded.append((reject.id, reject.key))  # a later reject of the same key
                continue
            if reject.held is not None:
                now = held_now(cur, job, row)
                if now is not None and not unchanged(reject.held, now):
                    superseded.append((reject.id, reject.key))  # written since: keep the newer
                    continue
            if loader.write_rows(cur, [row], isolate=True).refused:
                continue
            loaded.append(reject.id)
        queries.delete_rejects(cur, loaded + [reject_id for reject_id, _ in superseded])
        left = len(rejects) - len(loaded) - len(superseded)
        return Replayed(len(loaded), left, superseded)
    finally:
        queries.unlock(cur, job.name)
