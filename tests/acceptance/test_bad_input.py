"""Bad input fails the run with one clear line, exit 1, and nothing half-applied."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from tests.support import load_fixture, synthetic_feed


def assert_failed_cleanly(result, db, cause: str) -> dict:
    """Exit 1; one stderr line naming the job and the cause; one job_finished line; history."""
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: earthquakes failed: ")
    assert cause in line
    assert "Traceback" not in result.stdout + result.stderr
    [finished] = result.events("job_finished")
    assert finished["job"] == "earthquakes"
    assert finished["status"] == "failed"
    assert cause in finished["error"]
    assert finished["level"] == "error"
    run = db.runs()[-1]
    assert run["status"] == "failed"
    assert cause in run["error"]
    return run


@pytest.mark.parametrize(
    ("setup", "cause"),
    [
        (lambda feed: feed.fail(500, b"oops"), "answered 500 Internal Server Error"),
        (lambda feed: feed.fail(404), "answered 404 Not Found"),
        (lambda feed: feed.raw(b'{"type": "FeatureCollection", "features": [{'), "malformed JSON"),
        (lambda feed: feed.raw(b"<html>maintenance</html>"), "malformed JSON"),
        (lambda feed: feed.raw(b'{"features": [', declared_length=5000), "source: GET"),
        (lambda feed: feed.serve({"type": "FeatureCollection"}), "no 'features' list"),
    ],
    ids=["500", "404", "truncated-json", "not-json", "connection-cut-short", "no-features"],
)
def test_a_source_that_answers_garbage_fails_the_run_with_one_line(cli, db, feed, setup, cause):
    setup(feed)

    result = cli("run", "earthquakes")

    run = assert_failed_cleanly(result, db, cause)
    assert run["error"].startswith("source: ")
    assert db.scalar("SELECT count(*) FROM earthquakes") == 0
    assert db.state("earthquakes") == {}


def test_a_row_the_table_cannot_take_keeps_earlier_batches_and_their_state(cli, db, feed):
    document = synthetic_feed(1200)
    document["features"][700]["properties"]["mag"] = "strong"  # batch 2 of 500
    feed.serve(document)

    result = cli("run", "earthquakes", BATCH_SIZE="500")

    run = assert_failed_cleanly(result, db, "load: 22P02")
    assert "double precision" in run["error"]
    assert "batch 2" in run["error"]
    assert db.scalar("SELECT count(*) FROM earthquakes") == 500
    assert (run["rows"], run["batches"]) == (500, 1)
    five_hundredth = document["features"][499]["properties"]["updated"]
    cursor = dt.datetime.fromisoformat(db.state("earthquakes")["cursor"])
    assert cursor == dt.datetime.fromtimestamp(five_hundredth / 1000, tz=dt.UTC)


def test_an_event_without_an_id_is_a_bad_row(cli, db, feed):
    document = load_fixture()
    document["features"][3]["id"] = None
    feed.serve(document)

    result = cli("run", "earthquakes")

    assert_failed_cleanly(result, db, "bad row: row has no value for key id")
    assert db.scalar("SELECT count(*) FROM earthquakes") == 0


def test_a_feed_that_cannot_be_reached_names_the_url_without_credentials(cli, db):
    result = cli("run", "earthquakes", USGS_FEED_URL="http://user:hunter22@127.0.0.1:9/feed.json")

    assert_failed_cleanly(result, db, "source: GET http://127.0.0.1:9/feed.json failed")
    assert "hunter22" not in result.stdout + result.stderr


def test_an_unknown_job_exits_2_and_lists_the_known_ones(cli):
    result = cli("run", "nosuchjob")

    assert result.returncode == 2
    assert result.stderr.strip() == "error: unknown job 'nosuchjob'; known jobs: earthquakes"


def test_runs_json_lists_the_failure(cli, db, feed):
    feed.fail(503)
    cli("run", "earthquakes", HTTP_RETRIES="0")

    result = cli("runs", "--json")

    assert result.returncode == 0
    [run] = json.loads(result.stdout)
    assert {"job", "status", "rows", "started_at", "finished_at", "error", "trigger"} <= run.keys()
    assert (run["job"], run["status"], run["trigger"]) == ("earthquakes", "failed", "manual")
    assert run["error"].endswith("answered 503 Service Unavailable")
