"""The job bench/throughput.py runs through the real CLI: `python -m worker run bench_rows
--param rows=N --param seed=S` (JOBS_PACKAGE=bench.bench_jobs)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from bench.bench_jobs._data import COLUMNS, KEY, pages
from worker import Context, job


@job(table="bench_rows", columns=COLUMNS, key=KEY, cursor="observed_at")
def bench_rows(ctx: Context) -> Iterator[list[dict[str, Any]]]:
    yield from pages(int(ctx.params.get("rows", "100000")), int(ctx.params.get("seed", "42")))
