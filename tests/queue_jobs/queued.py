"""Jobs that show what each run was asked: the queue's tests read their tables.

`plain`: one row per run, what it received (ctx.params, since, until, full_refresh), keyed
by the run's id: a request it served is a row, with the real value of a credential.
`flaky`: `plain`, which raises first while the file FLAKY_FILE holds "fail" (so one worker
fails and recovers, as a test says, with no restart).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from worker import Context, job

SERVED = {
    "run_id": "bigint",
    "params": "jsonb",
    "since": "date",
    "until": "date",
    "full_refresh": "boolean",
}


def served(ctx: Context) -> dict[str, Any]:
    return {
        "run_id": ctx.run_id,
        "params": dict(ctx.params),
        "since": ctx.since,
        "until": ctx.until,
        "full_refresh": ctx.full_refresh,
    }


@job(table="plain_served", columns=SERVED, key="run_id")
def plain(ctx: Context) -> Iterator[Any]:
    yield served(ctx)


@job(table="flaky_served", columns=SERVED, key="run_id")
def flaky(ctx: Context) -> Iterator[Any]:
    flag = os.environ.get("FLAKY_FILE")
    if flag and Path(flag).exists() and Path(flag).read_text().strip() == "fail":
        raise RuntimeError("the source is down")
    yield served(ctx)
