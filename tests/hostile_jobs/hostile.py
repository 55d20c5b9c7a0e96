"""Jobs that yield what a JSON document at HOSTILE_URL holds, as it is: hostile data on tap.

The document is {"rows": [...], "raise": "message"?}. Each item is yielded as it is (a dict,
a list as a page, or anything else). Values written as {"$dt": "..."}, {"$uuid": "..."},
{"$nan": true}, {"$bytes": "..."} or {"$object": true} become those Python values first, so a
test can send what JSON cannot carry.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Iterator
from typing import Any

from worker import Context, job

COLUMNS = {
    "id": "text",
    "at": "timestamptz",
    "n": "integer",
    "label": "text",
    "payload": "jsonb",
    "day": "date",
}


def typed(value: Any) -> Any:
    if isinstance(value, list):
        return [typed(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "$dt" in value:
        return dt.datetime.fromisoformat(value["$dt"])
    if "$uuid" in value:
        return uuid.UUID(value["$uuid"])
    if "$nan" in value:
        return float("nan")
    if "$bytes" in value:
        return value["$bytes"].encode()
    if "$object" in value:
        return object()
    return {k: typed(v) for k, v in value.items()}


def items(ctx: Context) -> Iterator[Any]:
    document = ctx.http.get_json(os.environ["HOSTILE_URL"])
    for item in document.get("rows", []):
        yield typed(item)
    if document.get("raise"):
        raise RuntimeError(document["raise"])


@job(table="hostile", columns=COLUMNS, key="id", cursor="at")
def hostile(ctx: Context) -> Iterator[Any]:
    yield from items(ctx)


@job(table="by_uuid", columns={"id": "uuid", "label": "text"}, key="id", cursor="id")
def by_uuid(ctx: Context) -> Iterator[Any]:
    yield from items(ctx)


@job(table="leaky", columns={"id": "text"}, key="id")
def leaky(ctx: Context) -> Iterator[Any]:
    token = ctx.secret("LEAKY_TOKEN")
    ctx.log.info("token_read", token=token, note=f"the token is {token}")
    yield {"id": token}
    raise RuntimeError(f"the source refused token {token}")
