"""Two jobs over the same rows, one without a version column and one with: what a replay of
refused rows does depends on it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from worker import Context, job


def rows(ctx: Context) -> Iterator[Any]:
    yield ctx.http.get_json(os.environ["REPLAY_URL"])["rows"]


@job(table="plain", columns={"id": "text", "n": "integer"}, key="id", max_rejected=50)
def plain(ctx: Context) -> Iterator[Any]:
    yield from rows(ctx)


@job(
    table="versioned",
    columns={"id": "text", "n": "integer", "v": "integer"},
    key="id",
    version="v",
    max_rejected=50,
)
def versioned(ctx: Context) -> Iterator[Any]:
    yield from rows(ctx)
