"""Statements built from job declarations, and batches sent in one round trip.

The layers above (the loader, migrations, the store) compose SQL with these and never import
the driver themselves. Names from job declarations always go through `Identifier`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from psycopg2.extras import Json, execute_values
from psycopg2.sql import SQL, Composable, Composed, Identifier

__all__ = ["SQL", "Composable", "Composed", "Identifier", "insert_values", "jsonb"]


def insert_values(cur: Any, statement: Composable, values: Sequence[tuple]) -> int:
    """Send every row of `values` in one statement (`execute_values`); return its rowcount."""
    execute_values(cur, statement, values, page_size=max(len(values), 1))
    return max(cur.rowcount, 0)


def jsonb(value: Any, default: Callable[[Any], Any] | None = None) -> Json:
    """A value for a jsonb parameter; `default` encodes what json cannot (as json.dumps)."""
    return Json(value, dumps=lambda v: json.dumps(v, default=default, sort_keys=True))
