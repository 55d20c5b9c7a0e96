"""NaN and ±Infinity through the real CLI, against a real PostgreSQL 15: in a cursor or a
version they are refused rows (kept in nightshift.rejects with the reason), never a failed run
or a saved cursor; in plain number columns they are stored; a saved cursor an older version
left unusable fails the run in one line until `--full-refresh` replaces it."""

from __future__ import annotations

import json
from typing import Any

VALUES = {"JOBS_PACKAGE": "tests.value_jobs"}
NOT_FINITE = "is not a finite number: NaN and ±Infinity cannot be a cursor or a version"


def rejects(db: Any) -> list[tuple[str, str]]:
    """Each refused row's id (from its key) and why, in order."""
    return db.query("SELECT key->>'id', error FROM nightshift.rejects ORDER BY id")


def test_nan_and_infinity_as_a_cursor_are_refused_rows_and_the_run_saves_a_finite_cursor(
    cli, db, feed
):
    feed.serve(
        {
            "rows": [
                {"id": "a", "n": 1},
                {"id": "nan", "n": {"$decimal": "NaN"}},
                {"id": "inf", "n": {"$decimal": "Infinity"}},
                {"id": "text-inf", "n": "-inf"},
                {"id": "float-nan", "n": {"$float": "nan"}},
                {"id": "b", "n": {"$decimal": "2.5"}},
            ]
        }
    )

    result = cli("run", "numbers", VALUES_URL=feed.url, **VALUES)

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    [finished] = result.events("job_finished")
    assert (finished["status"], finished["rejected"]) == ("succeeded", 4)
    reason = NOT_FINITE
    assert rejects(db) == [
        ("nan", f"cursor column 'n': Decimal('NaN') {reason}"),
        ("inf", f"cursor column 'n': Decimal('Infinity') {reason}"),
        ("text-inf", f"cursor column 'n': '-inf' {reason}"),
        ("float-nan", f"cursor column 'n': nan {reason}"),
    ]
    assert db.query("SELECT id, n::text FROM numbers ORDER BY id") == [("a", "1"), ("b", "2.5")]
    assert db.state("numbers") == {"cursor": "2.5"}
    # The next run reads that cursor back.
    feed.serve({"rows": [{"id": "c", "n": 3}]})
    assert cli("run", "numbers", VALUES_URL=feed.url, **VALUES).returncode == 0
    assert db.state("numbers") == {"cursor": "3"}


def test_infinity_in_plain_number_columns_of_a_run_is_stored_and_where_it_cannot_be_kept(
    cli, db, feed
):
    feed.serve(
        {
            "rows": [
                {
                    "id": "a",
                    "n": 1,
                    "amount": {"$decimal": "-Infinity"},
                    "ratio": {"$float": "inf"},
                    "share": {"$decimal": "NaN"},
                },
                {"id": "b", "n": 2, "price": {"$decimal": "Infinity"}},
            ]
        }
    )

    result = cli("run", "numbers", VALUES_URL=feed.url, **VALUES)

    assert result.returncode == 0, result.stderr
    assert db.query("SELECT id, amount::text, ratio::text, share::text FROM numbers") == [
        ("a", "-Infinity", "Infinity", "NaN")
    ]
    assert rejects(db) == [("b", "22003 numeric field overflow")]
    assert json.loads(db.scalar("SELECT key::text FROM nightshift.rejects")) == {"id": "b"}


def test_a_nan_version_is_a_refused_row_not_a_failed_run(cli, db, feed):
    feed.serve(
        {
            "rows": [
                {"id": "a", "v": 1.0, "label": "one"},
                {"id": "a", "v": {"$float": "nan"}, "label": "nan"},
                {"id": "b", "v": "Infinity", "label": "inf"},
                {"id": "a", "v": 2.0, "label": "two"},
            ]
        }
    )

    result = cli("run", "revisions", VALUES_URL=feed.url, **VALUES)

    assert result.returncode == 0, result.stderr
    reason = NOT_FINITE
    assert rejects(db) == [
        ("a", f"version column 'v': nan {reason}"),
        ("b", f"version column 'v': 'Infinity' {reason}"),
    ]
    assert db.query("SELECT id, v, label FROM revisions") == [("a", 2.0, "two")]


def test_a_saved_nan_cursor_fails_the_run_in_one_line_until_a_full_refresh(cli, db, feed):
    feed.serve({"rows": [{"id": "a", "n": 1}]})
    assert cli("run", "numbers", VALUES_URL=feed.url, **VALUES).returncode == 0
    # What the code before issue 17 saved after a Decimal('NaN') cursor.
    db.query(
        """UPDATE nightshift.job_state SET state = '{"cursor": "NaN"}' WHERE job = 'numbers'"""
    )

    failed = cli("run", "numbers", VALUES_URL=feed.url, **VALUES)

    assert failed.returncode == 1
    assert "Traceback" not in failed.stdout + failed.stderr
    [line] = failed.stderr.strip().splitlines()
    assert line == (
        "error: numbers failed: state: the saved cursor of job 'numbers' cannot be used ('NaN'"
        " is not a finite number: NaN and ±Infinity cannot be a cursor or a version);"
        " run `python -m worker run numbers --full-refresh` to load the job afresh and replace it"
    )
    assert db.runs()[-1]["status"] == "failed"

    mended = cli("run", "numbers", "--full-refresh", VALUES_URL=feed.url, **VALUES)

    assert mended.returncode == 0, mended.stderr
    assert db.state("numbers") == {"cursor": "1"}
    assert cli("run", "numbers", VALUES_URL=feed.url, **VALUES).returncode == 0
    assert [run["status"] for run in db.runs()] == ["succeeded", "failed", "succeeded", "succeeded"]


def test_a_full_refresh_that_reaches_no_cursor_still_replaces_an_unusable_one(cli, db, feed):
    feed.serve({"rows": []})
    assert cli("run", "numbers", VALUES_URL=feed.url, **VALUES).returncode == 0
    db.query(
        "INSERT INTO nightshift.job_state (job, state) VALUES ('numbers', %s)"
        " ON CONFLICT (job) DO UPDATE SET state = EXCLUDED.state",
        (json.dumps({"cursor": "Infinity"}),),
    )
    assert cli("run", "numbers", VALUES_URL=feed.url, **VALUES).returncode == 1

    assert cli("run", "numbers", "--full-refresh", VALUES_URL=feed.url, **VALUES).returncode == 0

    assert db.state("numbers") == {}
    assert cli("run", "numbers", VALUES_URL=feed.url, **VALUES).returncode == 0


def test_a_refused_row_keyed_by_a_negative_number_is_kept_and_the_run_succeeds(cli, db, feed):
    """What the table held for the refused row's key is looked up with the key as sent: -1
    must be read as minus one, not as the minus of the text '1'."""
    feed.serve(
        {"rows": [{"id": -1, "n": 1, "price": {"$decimal": "Infinity"}}, {"id": -2, "n": 2}]}
    )

    result = cli("run", "numbers", VALUES_URL=feed.url, **VALUES)

    assert result.returncode == 0, result.stderr
    assert rejects(db) == [("-1", "22003 numeric field overflow")]
    assert db.query("SELECT id FROM numbers") == [("-2",)]
