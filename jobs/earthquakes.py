"""Earthquakes of the past day, from the USGS GeoJSON summary feed, upserted on the event id.

Feed format: https://earthquake.usgs.gov/earthquakes/feed/v1.0/geojson.php. Events are revised
after the fact (magnitude, status 'automatic' -> 'reviewed'); each revision bumps `updated`,
which is this job's cursor: a run loads only events updated since the last one it committed
from the same feed (the cursor is scoped to the feed's URL, so a wider feed loads whole), and
its version: a stored event is replaced only by a revision at least as new.
Real data has nulls nearly everywhere, negative magnitudes and depths, integer magnitudes.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from typing import Any

from worker import Context, SourceError, job

FEED_URL = "https://earthquake.usgs.gov/earthquakes/feed/v1.0/summary/all_day.geojson"

COLUMNS = {
    "id": "text",
    "mag": "double precision",
    "mag_type": "text",
    "place": "text",
    "time": "timestamptz",
    "updated": "timestamptz",
    "longitude": "double precision",
    "latitude": "double precision",
    "depth_km": "double precision",
    "status": "text",
    "event_type": "text",
    "title": "text",
    "url": "text",
    "felt": "integer",
    "cdi": "double precision",
    "mmi": "double precision",
    "alert": "text",
    "tsunami": "boolean",
    "sig": "integer",
    "net": "text",
    "code": "text",
    "sources": "text",
    "nst": "integer",
    "dmin": "double precision",
    "rms": "double precision",
    "gap": "double precision",
}


@job(
    table="earthquakes",
    columns=COLUMNS,
    key="id",
    cursor="updated",
    version="updated",
    schedule="*/15 * * * *",
)
def earthquakes(ctx: Context) -> Iterator[dict[str, Any]]:
    url = os.environ.get("USGS_FEED_URL", FEED_URL)
    # Taken once: batches that commit while the feed streams move ctx.cursor on.
    cursor = ctx.scope(url)
    read = loaded = 0
    # Streamed, event by event, in the feed's order (newest first, revisions anywhere): the
    # engine saves the cursor with the run's last batch, once every row is in.
    features = ctx.http.json_items(url, "features", missing="the feed has no 'features' list")
    for feature in features:
        read += 1
        row = to_row(feature)
        if not in_window(row["time"], ctx.since, ctx.until):
            continue  # a backfill (--since/--until) takes only events of those days
        # >= : events sharing the saved timestamp may not all have been committed.
        if cursor is None or row["updated"] is None or row["updated"] >= cursor:
            loaded += 1
            yield row
    ctx.log.info("feed_read", events=read, loaded=loaded, cursor=cursor)


def in_window(time: dt.datetime | None, since: dt.date | None, until: dt.date | None) -> bool:
    """Is the event's day (UTC) within [since, until]? An open end admits everything."""
    if time is None:
        return since is None and until is None
    day = time.astimezone(dt.UTC).date()
    return (since is None or day >= since) and (until is None or day <= until)


def to_row(feature: dict[str, Any]) -> dict[str, Any]:
    props = feature.get("properties") or {}
    coordinates = ((feature.get("geometry") or {}).get("coordinates") or []) + [None] * 3
    longitude, latitude, depth = coordinates[:3]
    return {
        "id": feature.get("id"),
        "mag": props.get("mag"),
        "mag_type": props.get("magType"),
        "place": props.get("place"),
        "time": from_epoch_ms(props.get("time")),
        "updated": from_epoch_ms(props.get("updated")),
        "longitude": longitude,
        "latitude": latitude,
        "depth_km": depth,
        "status": props.get("status"),
        "event_type": props.get("type"),
        "title": props.get("title"),
        "url": props.get("url"),
        "felt": props.get("felt"),
        "cdi": props.get("cdi"),
        "mmi": props.get("mmi"),
        "alert": props.get("alert"),
        "tsunami": None if props.get("tsunami") is None else bool(props["tsunami"]),
        "sig": props.get("sig"),
        "net": props.get("net"),
        "code": props.get("code"),
        "sources": props.get("sources"),
        "nst": props.get("nst"),
        "dmin": props.get("dmin"),
        "rms": props.get("rms"),
        "gap": props.get("gap"),
    }


def from_epoch_ms(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    try:
        return dt.datetime.fromtimestamp(int(value) / 1000, tz=dt.UTC)
    except (TypeError, ValueError, OverflowError):
        raise SourceError(f"bad epoch-millisecond time {value!r}") from None
