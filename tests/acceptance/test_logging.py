"""Logs: one JSON object per line; every line of a run names it; one canonical line per run."""

from __future__ import annotations

import signal


def test_a_run_logs_json_lines_that_all_carry_job_and_run_id(cli):
    result = cli("run", "earthquakes")

    assert result.returncode == 0
    lines = result.logs  # every stdout line parses as JSON
    assert lines
    run_lines = [line for line in lines if line["logger"] in ("nightshift.run", "jobs.earthquakes")]
    assert {line["event"] for line in run_lines} == {"job_started", "feed_read", "job_finished"}
    run_id = result.events("job_started")[0]["run_id"]
    for line in run_lines:
        assert (line["job"], line["run_id"]) == ("earthquakes", run_id)
        assert line["timestamp"].endswith("Z")
    [finished] = result.events("job_finished")
    assert finished.keys() >= {"status", "rows", "changed", "duration_s"}
    assert (finished["status"], finished["rows"]) == ("succeeded", 151)


def test_urllib3_logs_come_through_the_same_renderer_with_the_run_bound(cli):
    result = cli("run", "earthquakes", USGS_FEED_URL="http://127.0.0.1:9/feed", HTTP_RETRIES="1")

    assert result.returncode == 1
    [retry] = [line for line in result.logs if line["logger"] == "urllib3.connectionpool"]
    assert retry["level"] == "warning"
    assert retry["event"].startswith("Retrying")
    assert retry["job"] == "earthquakes"
    assert retry["run_id"] == result.events("job_started")[0]["run_id"]
    assert len(result.events("job_finished")) == 1


def test_the_worker_logs_apscheduler_lines_as_json_too(workers):
    process, tail = workers()
    scheduled = tail.wait_event("job_scheduled")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=25) == 0

    assert (scheduled["schedule"], scheduled["timezone"]) == ("*/15 * * * *", "UTC")
    tail.text()
    assert all(line["event"] != "<not json>" for line in tail.lines)
    assert any(line["logger"] == "apscheduler.scheduler" for line in tail.lines)
    assert tail.events("worker_started")[0]["database"].startswith("environment DATABASE_URL")
