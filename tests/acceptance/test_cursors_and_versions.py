"""Cursors never skip rows silently, and an older revision never replaces a newer one, on real
USGS feeds (tests/fixtures/README.md)."""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path

from tests.support import load_fixture

WEEK = json.loads(
    (
        Path(__file__).resolve().parents[1] / "fixtures" / "usgs_all_week_2013-08-16.geojson"
    ).read_text()
)


def ids(document: dict) -> set[str]:
    return {feature["id"] for feature in document["features"]}


def loaded(db) -> set[str]:
    return {row[0] for row in db.query("SELECT id FROM earthquakes")}


def busiest_day(document: dict) -> dt.date:
    days = [
        dt.datetime.fromtimestamp(f["properties"]["time"] / 1000, tz=dt.UTC).date()
        for f in document["features"]
    ]
    return max(set(days), key=days.count)


def test_a_backfill_window_leaves_the_cursor_where_it_was(cli, db, feed):
    feed.serve(WEEK)
    day = busiest_day(WEEK).isoformat()

    window = cli("run", "earthquakes", "--since", day, "--until", day)
    plain = cli("run", "earthquakes")

    assert (window.returncode, plain.returncode) == (0, 0), plain.stderr
    assert window.events("job_finished")[0]["rows"] < len(ids(WEEK))
    assert loaded(db) == ids(WEEK)  # on today's main the plain run skipped the older days


def test_a_wider_feed_is_loaded_whole_whatever_another_feed_left_in_the_cursor(cli, db, feed):
    day = load_fixture()
    feed.serve(day)
    assert cli("run", "earthquakes").returncode == 0
    feed.serve(WEEK)  # another source: the week feed, at its own URL

    result = cli("run", "earthquakes", USGS_FEED_URL=feed.url.replace("all_day", "all_week"))

    assert result.returncode == 0, result.stderr
    assert loaded(db) == ids(day) | ids(WEEK)
    assert set(db.state("earthquakes")["cursors"]) == {
        feed.url,
        feed.url.replace("all_day", "all_week"),
    }


def test_an_older_snapshot_loaded_after_a_newer_one_brings_back_no_old_revision(cli, db, feed):
    feed.serve(WEEK)
    assert cli("run", "earthquakes").returncode == 0
    before = dict(db.query("SELECT id, mag FROM earthquakes"))
    older = copy.deepcopy(WEEK)
    for feature in older["features"]:  # the same events, an hour earlier, other magnitudes
        feature["properties"]["updated"] -= 3_600_000
        feature["properties"]["mag"] = (feature["properties"]["mag"] or 0) + 1

    result = cli("run", "earthquakes", "--full-refresh")

    assert result.returncode == 0, result.stderr
    feed.serve(older)
    result = cli("run", "earthquakes", "--full-refresh")
    assert result.returncode == 0, result.stderr
    [finished] = result.events("job_finished")
    assert (finished["rows"], finished["changed"]) == (len(ids(WEEK)), 0)
    assert dict(db.query("SELECT id, mag FROM earthquakes")) == before
