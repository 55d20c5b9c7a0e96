"""`run JOB --dry-run` extracts and checks every row — against the declaration and against the
table itself, in a transaction rolled back — and writes nothing: no row, no state, no run."""

from __future__ import annotations

from tests.support import load_fixture

HOSTILE = {"JOBS_PACKAGE": "tests.hostile_jobs"}


def test_a_dry_run_reports_counts_and_the_first_problems_and_writes_nothing(cli, db, feed):
    feed.serve(
        {
            "rows": [
                {"id": "a", "at": "2024-01-01T00:00:00Z", "n": 1},
                {"id": "b", "n": "strong"},  # the table refuses it
                {"id": "c", "at": "yesterday"},  # the cursor cannot be a time
                {"label": "keyless"},
                {"id": "a", "at": "2024-01-02T00:00:00Z", "n": 2},  # a repeated key
            ]
        }
    )

    result = cli("run", "hostile", "--dry-run", HOSTILE_URL=feed.url, **HOSTILE)

    assert result.returncode == 1  # problems found
    assert result.stdout.splitlines() == [
        "dry run of hostile: nothing was written",
        "rows yielded:  5",
        "would write:   1 (1 new or changed)",
        "refused:       3",
        "cursor:        none -> 2024-01-02T00:00:00+00:00",
        "first problems (3 of 3):",
        "  id='c': cursor column 'at': 'yesterday' is not a valid timestamptz",
        "  id=None: row has no value for key id",
        "  id='b': 22P02 invalid input syntax for type integer: \"strong\"",
    ]
    assert db.query("SELECT to_regclass('hostile'), to_regclass('nightshift.runs')") == [
        (None, None)
    ]


def test_a_dry_run_after_a_real_run_would_change_nothing(cli, db, feed):
    count = len(load_fixture()["features"])
    assert cli("run", "earthquakes").returncode == 0
    runs_before = db.runs()

    result = cli("run", "earthquakes", "--dry-run", "--full-refresh")

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1:4] == [
        f"rows yielded:  {count}",
        f"would write:   {count} (0 new or changed)",
        "refused:       0",
    ]
    assert db.runs() == runs_before  # no run recorded


def test_a_dry_run_of_a_failing_job_is_one_line(cli, feed):
    feed.fail(500)

    result = cli("run", "earthquakes", "--dry-run")

    assert result.returncode == 1
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith("error: earthquakes dry run failed: source: GET http://127.0.0.1:")
    )
