"""`run earthquakes_history` through the real CLI, against the local FDSN stand-in (tests/fdsn.py)
serving a real week of events, and a real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections.abc import Iterator

import pytest

from jobs.earthquakes import COLUMNS
from jobs.earthquakes_history import fdsn_time
from tests.fdsn import FdsnServer, Logged, week
from worker.registry import discover

JOB = "earthquakes_history"
WEEK = ("--since", "2013-08-09", "--until", "2013-08-16")
IDS = {f["id"] for f in week()}
NEWEST = max(f["properties"]["updated"] for f in week())


@pytest.fixture
def fdsn() -> Iterator[FdsnServer]:
    server = FdsnServer()
    yield server
    server.close()


@pytest.fixture
def history(cli, fdsn):
    """`run earthquakes_history *args` against the stand-in, with a first run that reaches
    back to 2013 (its default, the last 30 days, would find nothing there)."""
    days = (dt.datetime.now(dt.UTC).date() - dt.date(2013, 8, 1)).days

    def run(*args: str, **env: str):
        env = {"USGS_FDSN_URL": fdsn.url, "USGS_FDSN_FIRST_DAYS": str(days), **env}
        return cli("run", JOB, *args, **env)

    return run


def utc(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)


def parse(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def window(request: Logged) -> tuple[str, str]:
    return request.params["starttime"], request.params["endtime"]


def test_the_job_shares_the_feed_jobs_table_and_runs_nightly():
    declared = discover()[JOB]

    assert (declared.table, declared.columns, declared.key) == ("earthquakes", COLUMNS, ("id",))
    assert (declared.cursor, declared.version, declared.mode) == ("updated", "updated", "upsert")
    assert (declared.schedule, declared.timezone) == ("0 2 * * *", "UTC")


def test_a_backfill_of_the_week_splits_refused_windows_and_pages_each_with_offsets(
    history, db, fdsn
):
    fdsn.search_limit = 500

    result = history(*WEEK, USGS_FDSN_PAGE_SIZE="200")

    assert result.returncode == 0, result.stderr
    assert db.scalar("SELECT count(*) FROM earthquakes") == 1718
    assert {row[0] for row in db.query("SELECT id FROM earthquakes")} == IDS
    assert db.state(JOB) == {}  # a window run saves no state
    asked = fdsn.queries()
    # GeoJSON asked for by name in every query: the service's default is QuakeML.
    assert {r.params.get("format") for r in asked} == {"geojson"}
    assert window(asked[0]) == ("2013-08-09T00:00:00.000", "2013-08-16T23:59:59.999")
    # Refused windows: the whole week, then halves of halves until each matches at most 500.
    refused = [i for i, r in enumerate(asked) if r.status == 400]
    assert len(refused) == len(result.events("fdsn_window_split")) >= 3
    for i in refused:
        assert "matching events exceeds search limit of 500." in asked[i].body
        start, end = window(asked[i])
        first_half = window(asked[i + 1])  # asked next: the earlier half
        assert first_half[0] == start and first_half[1] < end
        later = (fdsn_time(parse(first_half[1]) + dt.timedelta(milliseconds=1)), end)
        assert later in {window(r) for r in asked[i + 1 :]}
    # Answered windows tile the week, each paged 200 at a time from offset 1, oldest first.
    answered: dict[tuple[str, str], list[Logged]] = {}
    for r in asked:
        if r.status != 400:
            answered.setdefault(window(r), []).append(r)
    tiles = list(answered)
    assert tiles == sorted(tiles)
    assert tiles[0][0] == "2013-08-09T00:00:00.000" and tiles[-1][1] == "2013-08-16T23:59:59.999"
    for (_, end), (start, _) in itertools.pairwise(tiles):
        assert parse(start) - parse(end) == dt.timedelta(milliseconds=1)
    for pages in answered.values():
        assert [p.params["offset"] for p in pages] == [str(1 + 200 * n) for n in range(len(pages))]
        assert {(p.params["limit"], p.params["orderby"]) for p in pages} == {("200", "time-asc")}
        assert 0 < sum(p.events for p in pages) <= 500
        assert pages[-1].events < 200  # a short (or empty, 204) page ends the window
    assert any(len(pages) >= 3 for pages in answered.values())  # offsets 1, 201, 401
    assert sum(r.events for r in asked) == 1718
    [read] = result.events("fdsn_read")
    assert (read["events"], read["splits"], read["windows"]) == (1718, len(refused), len(tiles))


def test_a_range_without_events_answers_204_and_the_run_succeeds_with_no_rows(history, db, fdsn):
    result = history("--since", "2020-01-01", "--until", "2020-01-02")

    assert result.returncode == 0, result.stderr
    [asked] = fdsn.queries()
    assert (asked.status, window(asked)) == (
        204,
        ("2020-01-01T00:00:00.000", "2020-01-02T23:59:59.999"),
    )
    [run] = db.runs()
    assert (run["status"], run["rows"], run["error"]) == ("succeeded", 0, None)
    assert db.scalar("SELECT count(*) FROM earthquakes") == 0


def test_the_first_run_loads_from_its_horizon_and_the_next_asks_updatedafter_cursor_minus_lag(
    history, db, fdsn
):
    first = history()

    assert first.returncode == 0, first.stderr
    assert db.scalar("SELECT count(*) FROM earthquakes") == 1718
    [asked] = fdsn.queries()
    assert "updatedafter" not in asked.params  # a first run loads every event of its range
    horizon = db.state(JOB)["horizons"][fdsn.url]
    assert parse(asked.params["starttime"]) == dt.datetime.fromisoformat(horizon)
    assert parse(asked.params["starttime"]).date() in (dt.date(2013, 8, 1), dt.date(2013, 8, 2))
    cursor = dt.datetime.fromisoformat(db.cursor(JOB, fdsn.url))
    assert cursor == utc(NEWEST)

    second = history(USGS_FDSN_FIRST_DAYS="1")  # the horizon is saved: this no longer counts
    third = history(USGS_FDSN_LAG_HOURS="1")

    assert second.returncode == third.returncode == 0, second.stderr + third.stderr
    _, again, last = fdsn.queries()
    assert again.params["updatedafter"] == fdsn_time(cursor - dt.timedelta(hours=48))
    assert last.params["updatedafter"] == fdsn_time(cursor - dt.timedelta(hours=1))
    assert again.params["starttime"] == last.params["starttime"] == asked.params["starttime"]
    since = (cursor - dt.timedelta(hours=48)).timestamp() * 1000
    revised = sum(f["properties"]["updated"] > since for f in week())
    runs = db.runs()
    assert 0 < revised < 1718
    assert (runs[1]["rows"], runs[1]["changed"]) == (revised, 0)
    assert dt.datetime.fromisoformat(db.cursor(JOB, fdsn.url)) == cursor


def test_a_revision_is_picked_up_by_the_next_run_and_an_older_one_never_overwrites_it(
    history, db, fdsn
):
    assert history().returncode == 0
    event = week()[100]
    revised = fdsn.revise(event["id"], updated=NEWEST + 3_600_000, mag=7.7, status="reviewed")

    second = history()

    assert second.returncode == 0, second.stderr
    row = "SELECT mag, status, updated FROM earthquakes WHERE id = %s"
    assert db.query(row, (event["id"],)) == [(7.7, "reviewed", utc(NEWEST + 3_600_000))]
    assert db.runs()[-1]["changed"] == 1
    assert dt.datetime.fromisoformat(db.cursor(JOB, fdsn.url)) == utc(NEWEST + 3_600_000)

    fdsn.features = list(week())  # the service answers the older revision again
    day = utc(revised["properties"]["time"]).date().isoformat()
    backfill = history("--since", day, "--until", day)

    assert backfill.returncode == 0, backfill.stderr
    assert db.runs()[-1]["rows"] > 0
    assert db.query(row, (event["id"],)) == [(7.7, "reviewed", utc(NEWEST + 3_600_000))]


def test_an_event_loaded_by_the_feed_job_and_by_this_job_is_one_row_the_newer_revision(
    cli, history, db, feed, fdsn
):
    last_day = sorted(week(), key=lambda f: f["properties"]["time"])[-50:]
    newer = {**last_day[0], "properties": {**last_day[0]["properties"]}}
    newer["properties"].update(updated=NEWEST + 60_000, mag=5.5)
    feed.serve({"type": "FeatureCollection", "features": [newer, *last_day[1:]]})
    assert cli("run", "earthquakes").returncode == 0
    assert db.scalar("SELECT count(*) FROM earthquakes") == 50

    result = history(*WEEK)

    assert result.returncode == 0, result.stderr
    assert db.scalar("SELECT count(*) FROM earthquakes") == 1718
    assert {row[0] for row in db.query("SELECT id FROM earthquakes")} == IDS
    mag = db.scalar("SELECT mag FROM earthquakes WHERE id = %s", (newer["id"],))
    assert mag == 5.5  # the feed's newer revision stays
    assert db.runs()[-1]["changed"] == 1718 - 50  # the 49 others were already as loaded


def test_a_500_from_the_service_fails_the_run_with_one_line_naming_the_job(history, db, fdsn):
    fdsn.fail(500, "Database connection failed.")

    result = history()

    assert result.returncode == 1
    error = (
        f"source: GET {fdsn.url}/query answered 500:"
        " Error 500: Internal Server Error: Database connection failed."
    )
    assert result.stderr.splitlines() == [f"error: {JOB} failed: {error}"]
    [run] = db.runs()
    assert (run["job"], run["status"], run["error"]) == (JOB, "failed", error)
    [finished] = result.events("job_finished")
    assert (finished["job"], finished["error"]) == (JOB, error)


def test_a_window_under_a_second_that_is_still_refused_fails_with_one_line(history, db, fdsn):
    fdsn.search_limit = 1  # two events of 2013-08-10 share the same millisecond

    result = history("--since", "2013-08-10", "--until", "2013-08-10")

    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert re.fullmatch(
        rf"error: {JOB} failed: source: 2 matching events exceed the search limit of 1"
        r" between 2013-08-10T14:42:48\.\d{3} and 2013-08-10T14:42:4\d\.\d{3},"
        r" a window under 1 s that is not split",
        line,
    ), line
    assert db.runs()[-1]["status"] == "failed"


def test_a_service_that_pages_past_its_limit_is_read_whole_without_splitting(history, db, fdsn):
    fdsn.search_limit, fdsn.paged_past_limit = 500, True  # as the live USGS service does

    result = history(*WEEK, USGS_FDSN_PAGE_SIZE="200")

    assert result.returncode == 0, result.stderr
    assert db.scalar("SELECT count(*) FROM earthquakes") == 1718
    asked = fdsn.queries()
    assert [r.params["offset"] for r in asked] == [str(1 + 200 * n) for n in range(9)]
    assert {r.status for r in asked} == {200}


def test_bad_settings_fail_the_run_with_one_line(history, db, fdsn):
    result = history(USGS_FDSN_PAGE_SIZE="20001")

    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: {JOB} failed: job: ValueError: USGS_FDSN_PAGE_SIZE must be a whole number"
        " from 1 to 20000, got '20001'"
    ]
    assert fdsn.requests == []
