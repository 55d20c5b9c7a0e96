"""What a job receives: its HTTP session, saved state, run parameters and logger."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from worker.errors import MissingSecret
from worker.http import Session
from worker.redact import register_secret
from worker.run.state import StateTracker


@dataclass
class Context:
    """Handed to a job function. Everything a job may use; nothing it must not."""

    job: str
    run_id: int
    http: Session
    log: Any
    params: Mapping[str, str] = field(default_factory=dict)
    full_refresh: bool = False
    since: dt.date | None = None  # a backfill window (`--since/--until`), either end open
    until: dt.date | None = None
    _state: StateTracker | None = field(default=None, repr=False)

    @property
    def state(self) -> Mapping[str, Any]:
        """The state saved by the last committed batch (empty on a first or full-refresh run)."""
        return MappingProxyType(self._state.saved if self._state else {})

    @property
    def cursor(self) -> Any:
        """The greatest cursor value committed so far (of the column's type), or None: fetch
        rows with cursor >= it. None in a run with a window or a full refresh."""
        return self._state.cursor if self._state else None

    def scope(self, source: str) -> Any:
        """Say which source the rows come from (e.g. the feed's URL), before yielding any: each
        source keeps its own cursor, so pointing the job elsewhere never skips rows. Returns
        that source's cursor (also `ctx.cursor` from now on)."""
        if self._state is not None:
            self._state.set_scope(source)
        return self.cursor

    def secret(self, name: str) -> str:
        """The environment variable `name`, masked in every line, error and alert from now on.
        A missing or empty one fails the run with one line naming it."""
        value = os.environ.get(name, "")
        if not value:
            raise MissingSecret(f"the environment has no {name} (ctx.secret)")
        register_secret(value)
        return value

    def checkpoint(self, **values: Any) -> None:
        """Save these values with the next batch: call it once the rows they cover are yielded."""
        if self._state is not None:
            self._state.checkpoint(values)
