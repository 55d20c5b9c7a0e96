"""What a job receives: its HTTP session, saved state, run parameters and logger."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from config import Settings
from worker.errors import MissingSecret
from worker.logs import get_logger
from worker.redact import register_secret, safe_url
from worker.run.request import RunRequest
from worker.run.state import StateTracker
from worker.source.http import Session
from worker.source.pages import full_url
from worker.source.paginators import Paginator


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

    @classmethod
    def for_run(
        cls,
        settings: Settings,
        job: str,
        run_id: int,
        request: RunRequest,
        tracker: StateTracker,
        stop_check: Callable[[], None],
    ) -> Context:
        """The context of one run: a fresh HTTP session (closed with it) that stops when
        `stop_check` raises, the job's logger, the request's parameters, the run's state."""
        return cls(
            job=job,
            run_id=run_id,
            http=Session(settings, before_request=stop_check),
            log=get_logger(f"jobs.{job}"),
            params=dict(request.params),
            full_refresh=request.full_refresh,
            since=request.since,
            until=request.until,
            _state=tracker,
        )

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

    def paginate(
        self,
        url: str,
        paginator: Paginator,
        *,
        items: str | None = None,
        params: Mapping[str, Any] | None = None,
        key: str = "pagination",
        **request: Any,
    ) -> Iterator[Any]:
        """The items of every page of a paginated JSON API, one by one (`items`: the path of
        each page's list; none: the page is the list), resuming where a run cut short stopped.

        The next page's position is checkpointed under `key` as the job takes each page's last
        item, so it is saved with the batch that holds that item's row: yield each item's rows
        before taking the next item. A run killed after the batch holding page 37 committed
        starts again at page 38. The position belongs to this request (URL, `params` and the
        kind of paginator): another one starts from the first page. When the pages end, the
        position is cleared, so the next run starts from the first page (or from its cursor,
        if the job sends it in `params`). `request`: anything `ctx.http.get` takes (`auth=`,
        `headers=`)."""
        start = f"{type(paginator).__name__} GET {safe_url(full_url(url, params))}"
        saved = self.state.get(key)
        resume = None
        if isinstance(saved, Mapping) and saved.get("start") == start:
            resume = saved.get("next")
            self.log.info("pagination_resumed", key=key, position=resume)
        walk = self.http.pages(url, paginator, items=items, params=params, resume=resume, **request)
        for page in walk:
            mark = {key: {"start": start, "next": page.next} if page.next else None}
            if not page.items:
                self.checkpoint(**mark)
            for index, item in enumerate(page.items, start=1):
                if index == len(page.items):
                    self.checkpoint(**mark)
                yield item
        self.checkpoint(**{key: None})
