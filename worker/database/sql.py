"""Statements built from job declarations, and batches sent in one round trip.

The layers above (the loader, migrations, the store) compose SQL with these and never import
the driver themselves. Names from job declarations always go through `Identifier`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import psycopg2
from psycopg2.extras import Json, execute_values
from psycopg2.sql import SQL, Composable, Composed, Identifier

from worker.database.classify import describe_error, refuses_rows
from worker.database.errors import RowsRefused

__all__ = ["SQL", "Composable", "Composed", "Identifier", "insert_values", "jsonb"]
_SAVEPOINT = "nightshift_rows"


def insert_values(
    cur: Any, statement: Composable, values: Sequence[tuple], isolated: bool = False
) -> int:
    """Send every row of `values` in one statement (`execute_values`); return its rowcount.

    Raises RowsRefused when the rows' own values are refused (a data or constraint error, or
    a value the driver cannot send). `isolated`: under a savepoint, so that the transaction
    goes on after a refusal; otherwise the refusal aborts it.
    """
    if isolated:
        cur.execute(f"SAVEPOINT {_SAVEPOINT}")
    try:
        execute_values(cur, statement, values, page_size=max(len(values), 1))
    except (psycopg2.Error, ValueError, TypeError) as exc:
        if not refuses_rows(exc):
            raise
        if isolated:
            cur.execute(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}")
        raise RowsRefused(describe_error(exc).replace("\x00", "\\0")) from exc
    changed = max(cur.rowcount, 0)
    if isolated:
        cur.execute(f"RELEASE SAVEPOINT {_SAVEPOINT}")
    return changed


def jsonb(value: Any, default: Callable[[Any], Any] | None = None) -> Json:
    """A value for a jsonb parameter; `default` encodes what json cannot (as json.dumps)."""
    return Json(value, dumps=lambda v: json.dumps(v, default=default, sort_keys=True))
