"""Jobs that yield the rows of a JSON document at VALUES_URL ({"rows": [...]}), with values
JSON cannot carry written as markers: {"$decimal": "NaN"}, {"$float": "-inf"},
{"$date": "2024-01-02"}, {"$dt": "2024-01-02T03:00:00+05:00"}, {"$uuid": "…"}."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from worker import Context, job

MARKERS = {
    "$decimal": Decimal,
    "$float": float,
    "$date": dt.date.fromisoformat,
    "$dt": dt.datetime.fromisoformat,
    "$uuid": uuid.UUID,
}


def typed(value: Any) -> Any:
    if isinstance(value, dict) and len(value) == 1 and next(iter(value)) in MARKERS:
        [(marker, text)] = value.items()
        return MARKERS[marker](text)
    if isinstance(value, dict):
        return {k: typed(v) for k, v in value.items()}
    return value


def rows(ctx: Context) -> Iterator[Any]:
    document = ctx.http.get_json(os.environ["VALUES_URL"])
    for row in document["rows"]:
        yield typed(row)


@job(
    table="numbers",
    columns={
        "id": "text",
        "n": "numeric",  # the cursor
        "amount": "numeric",
        "price": "numeric(10,2)",  # cannot hold an infinity
        "ratio": "double precision",
        "share": "real",
    },
    key="id",
    cursor="n",
)
def numbers(ctx: Context) -> Iterator[Any]:
    yield from rows(ctx)


@job(
    table="revisions",
    columns={"id": "text", "v": "double precision", "label": "text"},
    key="id",
    version="v",
)
def revisions(ctx: Context) -> Iterator[Any]:
    yield from rows(ctx)


@job(
    table="spelled",
    columns={"k": "text", "u": "uuid", "at": "timestamptz", "label": "text"},
    key=("k", "u", "at"),
)
def spelled(ctx: Context) -> Iterator[Any]:
    yield from rows(ctx)
