"""A job whose declaration a test sets through the environment, as a deploy would change it.

DRIFT_COLUMNS: its columns as JSON ({name: SQL type}); DRIFT_KEY: its key, comma-separated;
DRIFT_VERSION: its version column, if any. DRIFT_ROWS: the rows it yields (a JSON list).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

from worker import Context, job

COLUMNS = {"station": "text", "day": "date", "temperature": "integer"}


@job(
    table="weather",
    columns=json.loads(os.environ.get("DRIFT_COLUMNS") or json.dumps(COLUMNS)),
    key=tuple((os.environ.get("DRIFT_KEY") or "station,day").split(",")),
    version=os.environ.get("DRIFT_VERSION") or None,
)
def weather(ctx: Context) -> Iterator[dict[str, Any]]:
    yield from json.loads(os.environ.get("DRIFT_ROWS") or "[]")
