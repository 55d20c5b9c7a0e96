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


def test_a_row_the_table_refuses_is_quarantined_and_the_rest_loads_with_its_state(
    cli, db, feed, webhook
):
    document = synthetic_feed(1200)
    document["features"][700]["properties"]["mag"] = "strong"  # batch 2 of 500
    feed.serve(document)

    result = cli("run", "earthquakes", BATCH_SIZE="500", ALERT_WEBHOOK_URL=webhook.url)

    assert result.returncode == 0, result.stderr
    [finished] = result.events("job_finished")
    assert (finished["status"], finished["rows"], finished["rejected"]) == ("succeeded", 1199, 1)
    assert db.scalar("SELECT count(*) FROM earthquakes") == 1199
    [(key, row, error, run_id)] = db.query(
        "SELECT key::text, row::text, error, run_id FROM nightshift.rejects"
    )
    assert json.loads(key) == {"id": document["features"][700]["id"]}
    assert json.loads(row)["mag"] == "strong"
    assert error == '22P02 invalid input syntax for type double precision: "strong"'
    assert run_id == db.runs()[-1]["id"]
    newest = max(f["properties"]["updated"] for f in document["features"])
    cursor = dt.datetime.fromisoformat(db.cursor("earthquakes", feed.url))
    assert cursor == dt.datetime.fromtimestamp(newest / 1000, tz=dt.UTC)
    [alert] = webhook.received
    assert (alert["job"], alert["rejected"]) == ("earthquakes", 1)
    assert "1 row(s) refused" in alert["text"]
    assert alert["status"] == "succeeded"
    table = cli("rejects", "earthquakes")
    assert table.returncode == 0
    assert "22P02 invalid input syntax" in table.stdout


def test_with_max_rejected_0_a_refused_row_fails_the_run_keeping_earlier_batches(cli, db, feed):
    document = synthetic_feed(1200)
    document["features"][700]["properties"]["mag"] = "strong"  # batch 2 of 500
    feed.serve(document)

    result = cli("run", "earthquakes", BATCH_SIZE="500", EARTHQUAKES_MAX_REJECTED="0")

    run = assert_failed_cleanly(result, db, "load: 22P02")
    assert "double precision" in run["error"]
    assert "batch 2" in run["error"]
    assert db.scalar("SELECT count(*) FROM earthquakes") == 500
    assert (run["rows"], run["batches"]) == (500, 1)
    assert db.scalar("SELECT count(*) FROM nightshift.rejects") == 0
    five_hundredth = document["features"][499]["properties"]["updated"]
    cursor = dt.datetime.fromisoformat(db.cursor("earthquakes", feed.url))
    assert cursor == dt.datetime.fromtimestamp(five_hundredth / 1000, tz=dt.UTC)


def test_more_refused_rows_than_max_rejected_fail_the_run_with_one_line(cli, db, feed):
    document = synthetic_feed(300)
    for feature in document["features"][100:104]:
        feature["properties"]["mag"] = "strong"
    feed.serve(document)

    result = cli("run", "earthquakes", EARTHQUAKES_MAX_REJECTED="3")

    run = assert_failed_cleanly(result, db, "4 rows refused, more than max_rejected=3")
    assert run["error"].startswith("load: ")
    assert db.scalar("SELECT count(*) FROM earthquakes") == 0  # the batch rolled back whole
    assert db.scalar("SELECT count(*) FROM nightshift.rejects") == 0


def test_an_event_without_an_id_is_quarantined_as_a_bad_row(cli, db, feed):
    document = load_fixture()
    document["features"][3]["id"] = None
    feed.serve(document)

    result = cli("run", "earthquakes")

    assert result.returncode == 0, result.stderr
    assert db.scalar("SELECT count(*) FROM earthquakes") == len(document["features"]) - 1
    assert db.query("SELECT key::text, error FROM nightshift.rejects") == [
        ('{"id": null}', "row has no value for key id")
    ]
    failing = cli("run", "earthquakes", "--full-refresh", EARTHQUAKES_MAX_REJECTED="0")
    assert_failed_cleanly(failing, db, "bad row: row has no value for key id")


def test_a_feed_that_cannot_be_reached_names_the_url_without_credentials(cli, db):
    result = cli("run", "earthquakes", USGS_FEED_URL="http://user:hunter22@127.0.0.1:9/feed.json")

    assert_failed_cleanly(result, db, "source: GET http://127.0.0.1:9/feed.json failed")
    assert "hunter22" not in result.stdout + result.stderr


def test_an_unknown_job_exits_2_and_lists_the_known_ones(cli):
    result = cli("run", "nosuchjob")

    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == "error: unknown job 'nosuchjob'; known jobs: earthquakes, earthquakes_history"
    )


def test_runs_json_lists_the_failure(cli, db, feed):
    feed.fail(503)
    cli("run", "earthquakes", HTTP_RETRIES="0")

    result = cli("runs", "--json")

    assert result.returncode == 0
    [run] = json.loads(result.stdout)
    assert {"job", "status", "rows", "started_at", "finished_at", "error", "trigger"} <= run.keys()
    assert (run["job"], run["status"], run["trigger"]) == ("earthquakes", "failed", "manual")
    assert run["error"].endswith("answered 503 Service Unavailable")
