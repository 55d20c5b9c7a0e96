"""The operator's commands: jobs, runs, run's parameters, log format overrides."""

from __future__ import annotations

import json

import pytest


def test_jobs_shows_schedule_next_fire_time_and_last_run(cli):
    assert cli("run", "earthquakes").returncode == 0

    result = cli("jobs", EARTHQUAKES_SCHEDULE="0 3 * * *")

    assert result.returncode == 0
    header, row, _history = result.stdout.splitlines()
    assert header.split() == [
        "job",
        "schedule",
        "next",
        "run",
        "last",
        "run",
        "running",
        "now",
        "table",
    ]
    assert row.split()[:7] == ["earthquakes", "0", "3", "*", "*", "*", "(UTC)"]
    assert " 03:00:00 UTC  succeeded at " in row
    assert row.endswith("public.earthquakes")


def test_jobs_says_off_and_never_for_an_unscheduled_job_that_never_ran(cli):
    result = cli("jobs", EARTHQUAKES_SCHEDULE="off")

    assert result.returncode == 0
    row = result.stdout.splitlines()[1].split()
    assert row == ["earthquakes", "off", "-", "never", "-", "public.earthquakes"]


def test_runs_filters_by_job_and_limits(cli, feed):
    for _ in range(3):
        assert cli("run", "earthquakes").returncode == 0

    result = cli("runs", "earthquakes", "--limit", "2", "--json")

    runs = json.loads(result.stdout)
    assert [r["id"] for r in runs] == [3, 2]
    table = cli("runs", "--limit", "1")
    assert len(table.stdout.splitlines()) == 2
    assert table.stdout.splitlines()[1].split()[:4] == ["3", "earthquakes", "manual", "succeeded"]


def test_runs_of_an_unknown_job_exits_2(cli):
    result = cli("runs", "nope")

    assert result.returncode == 2
    assert "known jobs: earthquakes" in result.stderr


def test_run_parameters_are_recorded_and_a_malformed_one_is_refused(cli, db):
    assert cli("run", "earthquakes", "--param", "region=ca", "--full-refresh").returncode == 0
    assert db.scalar("SELECT params FROM nightshift.runs") == {"region": "ca", "full_refresh": True}

    refused = cli("run", "earthquakes", "--param", "novalue")

    assert refused.returncode == 1
    assert refused.stderr.strip() == "error: --param takes KEY=VALUE, got 'novalue'"


def test_full_refresh_ignores_the_saved_cursor(cli, db):
    assert cli("run", "earthquakes").returncode == 0

    result = cli("run", "earthquakes", "--full-refresh")

    [finished] = result.events("job_finished")
    assert (finished["rows"], finished["changed"]) == (151, 0)


@pytest.mark.parametrize("level", ["WARNING", "warning"])
def test_log_level_and_console_format_can_be_chosen(cli, level):
    quiet = cli("run", "earthquakes", LOG_LEVEL=level)
    assert quiet.returncode == 0
    assert quiet.stdout == ""  # nothing at warning level on success

    console = cli("run", "earthquakes", LOG_FORMAT="console")
    assert console.returncode == 0
    assert "job_finished" in console.stdout
    assert not console.stdout.lstrip().startswith("{")


def test_a_backfill_window_reaches_the_job(cli, db):
    result = cli("run", "earthquakes", "--since", "2016-11-03", "--until", "2016-11-03")

    assert result.returncode == 0, result.stderr
    assert db.scalar("SELECT count(*) FROM earthquakes") == 111  # the fixture's events of Nov 3
    assert db.scalar("SELECT min(time)::date FROM earthquakes").isoformat() == "2016-11-03"
    assert db.scalar("SELECT params FROM nightshift.runs") == {
        "since": "2016-11-03",
        "until": "2016-11-03",
    }


def test_a_malformed_date_is_refused(cli):
    result = cli("run", "earthquakes", "--since", "yesterday")

    assert result.returncode == 1
    assert result.stderr.strip() == "error: --since takes an ISO date (YYYY-MM-DD), got 'yesterday'"
