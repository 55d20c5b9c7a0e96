"""Earthquakes from the USGS FDSN event service: revisions nightly, backfills of any range.

It loads into `earthquakes`, the feed job's table (same columns and row mapping, from
`jobs.earthquakes`), upserted on the event id with `updated` as the version: an event is one row
whichever job saw it, and the newer revision wins. Service: `{USGS_FDSN_URL}/query`,
`format=geojson` (facts: shared/notes/usgs-fdsn.md).

What a run asks for (origin times, UTC, both ends inclusive):
- the first run (no cursor for this service's URL): every event of the last
  `USGS_FDSN_FIRST_DAYS` days (30; about 11,000 events worldwide). Not the whole catalogue:
  millions of events are a backfill to ask for on purpose. That start is the job's *horizon*,
  saved in its state (`horizons`, per service URL);
- each later run: every event from the horizon until now updated after `cursor - lag`
  (`updatedafter`; `USGS_FDSN_LAG_HOURS`, 48): revisions reach the service late (a magnitude
  reviewed, a location moved), so the window looks back rather than trusting the last `updated`
  it saw. So a revision of any event the job has loaded since it began is followed; events older
  than the horizon are loaded (and refreshed) by a backfill. `--full-refresh` starts over as a
  first run;
- `--since/--until` (dates, either end open): every event of those days, whatever its `updated`;
  an open `--since` starts at 1900-01-01, an open `--until` is now. A window run saves no state.

How: the range is cut into windows on origin time so that no query matches more than the
service's search limit (20,000): a window the service refuses with a 400 "N matching events
exceeds search limit of L" is split in two, recursively; a window under one second that is still
refused fails the run with one line. Inside a window it pages with `limit`
(`USGS_FDSN_PAGE_SIZE`, 20,000) and `offset` (1-based), `orderby=time-asc`. A 204 (FDSN's
`nodata` default) or an empty collection is an empty window; other error answers, plain text,
fail the run with one line quoting the service's message.

The cursor: rows come in origin-time order, not in `updated` order, so the engine saves the
cursor only with the run's last batch (worker/run/state.py). A run killed midway saves none and
the next run asks again from the previous cursor: nothing is lost, and upserts absorb repeats.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import requests

from jobs.earthquakes import COLUMNS, to_row
from worker import Context, SourceError, job
from worker.redact import safe_url

FDSN_URL = "https://earthquake.usgs.gov/fdsnws/event/1"
MAX_PAGE = 20000  # the service's largest `limit`
EARLIEST = dt.datetime(1900, 1, 1, tzinfo=dt.UTC)  # where an open --since starts
MS = dt.timedelta(milliseconds=1)  # event times are in milliseconds
SMALLEST_WINDOW = dt.timedelta(seconds=1)  # a window this short is not split further
REFUSED = re.compile(r"(\d+) matching events exceeds search limit of (\d+)")
HORIZONS = "horizons"


@job(
    table="earthquakes",
    columns=COLUMNS,
    key="id",
    cursor="updated",
    version="updated",
    schedule="0 2 * * *",
)
def earthquakes_history(ctx: Context) -> Iterator[list[dict[str, Any]]]:
    base = os.environ.get("USGS_FDSN_URL", FDSN_URL).rstrip("/")
    page_size = setting("USGS_FDSN_PAGE_SIZE", MAX_PAGE, high=MAX_PAGE)
    cursor = ctx.scope(base)  # this service's cursor: another URL keeps its own
    now = to_ms(dt.datetime.now(dt.UTC))
    search: dict[str, str] = {}
    if ctx.since or ctx.until:
        start = midnight(ctx.since) if ctx.since else EARLIEST
        end = midnight(ctx.until + dt.timedelta(days=1)) - MS if ctx.until else now
    else:
        start, end = horizon(ctx, base, now), now
        if cursor is not None:
            lag = dt.timedelta(hours=setting("USGS_FDSN_LAG_HOURS", 48, low=0))
            search["updatedafter"] = fdsn_time(cursor - lag)
    ctx.log.info("fdsn_search", start=fdsn_time(start), end=fdsn_time(end), **search)
    yield from windows(ctx, f"{base}/query", Window(start, end), search, page_size)


@dataclass(frozen=True)
class Window:
    """Origin times from `start` to `end`, both inclusive, to the millisecond."""

    start: dt.datetime
    end: dt.datetime

    def params(self) -> dict[str, str]:
        return {"starttime": fdsn_time(self.start), "endtime": fdsn_time(self.end)}

    def halves(self) -> tuple[Window, Window] | None:
        """Two windows that cover this one without overlap, or None when it is too short."""
        if self.end - self.start < SMALLEST_WINDOW:
            return None
        middle = to_ms(self.start + (self.end - self.start) / 2)
        return Window(self.start, middle), Window(middle + MS, self.end)


class SearchLimit(Exception):
    """The service refused a search that matches more events than it answers at once."""

    def __init__(self, matching: int, limit: int) -> None:
        super().__init__(f"{matching} matching events exceed the search limit of {limit}")
        self.matching, self.limit = matching, limit


def windows(
    ctx: Context, url: str, whole: Window, search: dict[str, str], page_size: int
) -> Iterator[list[dict[str, Any]]]:
    """Every event of `whole`, a page at a time, oldest window first.

    No `/count` first: the refusal is itself the count (the service counts before it answers
    and names the number), so asking first would double the requests of every window that fits
    (nearly all of them: a night's revisions, 30 days) to save one per window that does not;
    `/count` is also a USGS addition that other FDSN services lack. Caveat: probes of the live
    USGS service report that a search sending `limit` is answered page by page even past 20,000
    matches; there a window is then paged whole, with offsets as deep as the window is long.
    Harmless for a night or a month; if backfills of years grow slow, counting first (and
    splitting while the count exceeds `maxAllowed`) is the switch."""
    pending, done = [whole], {"windows": 0, "pages": 0, "events": 0, "splits": 0}
    while pending:
        window = pending.pop()
        offset = 1
        try:
            while True:
                # GeoJSON by name: without `format` the service answers QuakeML (XML).
                params = {"format": "geojson", **search, **window.params(), "orderby": "time-asc"}
                features = fetch_page(
                    ctx.http, url, params | {"limit": page_size, "offset": offset}
                )
                done["pages"] += 1
                done["events"] += len(features)
                if features:
                    yield [to_row(feature) for feature in features]
                if len(features) < page_size:
                    break
                offset += page_size
        except SearchLimit as refused:
            # Rows of the window's earlier pages (if it grew between pages) come again: upserts.
            halves = window.halves()
            if halves is None:
                raise SourceError(
                    f"{refused} between {fdsn_time(window.start)} and {fdsn_time(window.end)},"
                    f" a window under {SMALLEST_WINDOW.total_seconds():g} s that is not split"
                ) from None
            ctx.log.info(
                "fdsn_window_split",
                **window.params(),
                matching=refused.matching,
                limit=refused.limit,
            )
            done["splits"] += 1
            pending += reversed(halves)  # the earlier half next
            continue
        done["windows"] += 1
    ctx.log.info("fdsn_read", **done)


def fetch_page(http: requests.Session, url: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """One page of events; [] for an empty answer. Raises SearchLimit when the service refuses
    the search as too large, SourceError (one line) for any other answer it cannot use."""
    response = http.get(url, params=params)
    where = f"GET {safe_url(url)}"
    if response.status_code == 204:  # FDSN's nodata default: nothing matches
        return []
    if response.status_code >= 300:
        refused = REFUSED.search(response.text) if response.status_code == 400 else None
        if refused:
            raise SearchLimit(int(refused[1]), int(refused[2]))
        said = first_line(response.text) or response.reason
        raise SourceError(f"{where} answered {response.status_code}: {said}")
    try:
        document = response.json()
    except ValueError as exc:
        raise SourceError(f"{where} sent malformed JSON ({exc})") from None
    features = document.get("features", []) if isinstance(document, dict) else None
    if not isinstance(features, list):
        raise SourceError(f"{where} sent no 'features' list")
    return features


def first_line(text: str) -> str:
    """The service's message in one line: its first line ("Error 400: Bad Request") and, when
    that is only the status, the line that says why."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return ""
    said = lines[0]
    if re.fullmatch(r"Error \d+: [\w ]+", said) and len(lines) > 1:
        said = f"{said}: {lines[1]}"
    return said[:300]


def horizon(ctx: Context, base: str, now: dt.datetime) -> dt.datetime:
    """Where the job's origin range starts: saved by its first run (per service URL)."""
    horizons = dict(ctx.state.get(HORIZONS) or {})
    key = safe_url(base)
    if key in horizons:
        return dt.datetime.fromisoformat(horizons[key])
    start = to_ms(now - dt.timedelta(days=setting("USGS_FDSN_FIRST_DAYS", 30, low=1)))
    ctx.checkpoint(**{HORIZONS: {**horizons, key: start.isoformat()}})
    return start


def setting(name: str, default: int, low: int = 1, high: int | None = None) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    value = int(text) if text.isdigit() else -1
    if value < low or (high is not None and value > high):
        top = f" to {high}" if high is not None else " or more"
        raise ValueError(f"{name} must be a whole number from {low}{top}, got {text!r}")
    return value


def midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def to_ms(moment: dt.datetime) -> dt.datetime:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def fdsn_time(moment: dt.datetime) -> str:
    """UTC, to the millisecond, without an offset (FDSN reads it as UTC)."""
    utc = moment.astimezone(dt.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}"
