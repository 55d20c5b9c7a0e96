"""A replay of refused rows never goes back in time: a key a later run wrote since the refusal
is superseded (reported, removed, never written), and the counts say what happened."""

from __future__ import annotations

import pytest

JOBS = {"JOBS_PACKAGE": "tests.replay_jobs"}
# The cause of the refusals, which the operator later fixes: a constraint the test adds.
SMALL = "ALTER TABLE {table} ADD CONSTRAINT n_small CHECK (n < 100)"
FIXED = "ALTER TABLE {table} DROP CONSTRAINT n_small"


@pytest.fixture
def load(cli, feed):
    def run(job: str, *rows: dict) -> None:
        feed.serve({"rows": list(rows)})
        result = cli("run", job, REPLAY_URL=feed.url, **JOBS)
        assert result.returncode == 0, result.stderr

    return run


@pytest.fixture
def replay(cli):
    def run(job: str) -> list[str]:
        result = cli("rejects", job, "--replay", **JOBS)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip().splitlines()

    return run


def prepared(cli, db, table: str) -> None:
    assert cli("migrate", **JOBS).returncode == 0
    db.query(SMALL.format(table=table))


def test_a_key_a_later_run_wrote_is_superseded_not_put_back(cli, db, load, replay):
    prepared(cli, db, "plain")
    load("plain", {"id": "a", "n": 500}, {"id": "b", "n": 600})  # both refused
    load("plain", {"id": "a", "n": 7})  # a later run writes key a
    db.query(FIXED.format(table="plain"))

    lines = replay("plain")

    assert db.query("SELECT id, n FROM plain ORDER BY id") == [("a", 7), ("b", 600)]
    assert lines[-1] == "plain: 1 loaded, 1 superseded, 0 still refused"
    assert lines[0].startswith("plain: reject ") and '{"id": "a"}' in lines[0]
    assert lines[0].endswith("superseded by a later write")
    assert db.scalar("SELECT count(*) FROM nightshift.rejects") == 0


def test_a_versioned_job_reports_a_superseded_reject_instead_of_loaded(cli, db, load, replay):
    prepared(cli, db, "versioned")
    load("versioned", {"id": "a", "n": 500, "v": 1})
    load("versioned", {"id": "a", "n": 7, "v": 2})
    db.query(FIXED.format(table="versioned"))

    lines = replay("versioned")

    assert lines[-1] == "versioned: 0 loaded, 1 superseded, 0 still refused"
    assert db.query("SELECT id, n, v FROM versioned") == [("a", 7, 2)]


def test_a_key_nobody_wrote_since_is_loaded_and_one_still_refused_stays(cli, db, load, replay):
    prepared(cli, db, "plain")
    load("plain", {"id": "a", "n": 500}, {"id": "b", "n": 900})
    # The fix lets 500 in, not 900.
    db.query("ALTER TABLE plain DROP CONSTRAINT n_small, ADD CONSTRAINT n_mid CHECK (n < 800)")

    lines = replay("plain")

    assert lines == ["plain: 1 loaded, 0 superseded, 1 still refused"]
    assert db.query("SELECT id, n FROM plain") == [("a", 500)]
    assert db.query("SELECT key::text FROM nightshift.rejects") == [('{"id": "b"}',)]


def test_an_unchanged_stored_row_is_no_later_write_even_after_a_widening_migration(
    cli, db, load, replay
):
    prepared(cli, db, "plain")
    load("plain", {"id": "a", "n": 5})
    load("plain", {"id": "a", "n": 500})  # refused over a stored row, which stays as it was
    # The fix widens the column too: the stored 5 reads back as 5.000, the same value.
    db.query(FIXED.format(table="plain") + ", ALTER COLUMN n TYPE numeric(12,3)")

    assert replay("plain") == ["plain: 1 loaded, 0 superseded, 0 still refused"]
    assert db.query("SELECT id, n::text FROM plain") == [("a", "500.000")]


def test_of_two_rejects_of_one_key_the_later_is_replayed(cli, db, load, replay):
    prepared(cli, db, "plain")
    load("plain", {"id": "a", "n": 500})
    load("plain", {"id": "a", "n": 600})
    db.query(FIXED.format(table="plain"))

    lines = replay("plain")

    assert lines[-1] == "plain: 1 loaded, 1 superseded, 0 still refused"
    assert db.query("SELECT n FROM plain") == [(600,)]


def test_a_row_refused_before_a_later_row_of_its_key_in_the_same_batch_is_superseded(
    cli, db, load, replay
):
    assert cli("migrate", **JOBS).returncode == 0
    # The first row's version cannot be read (refused by the declaration's checks); the
    # second row of the same key, later in the same batch, loads.
    load("versioned", {"id": "a", "n": 1, "v": "soon"}, {"id": "a", "n": 2, "v": 3})
    [(held,)] = db.query("SELECT held::text FROM nightshift.rejects")
    assert held == "null"  # nothing stood there before the batch

    assert replay("versioned") == [
        'versioned: reject 1 (key {"id": "a"}) superseded by a later write',
        "versioned: 0 loaded, 1 superseded, 0 still refused",
    ]
    assert db.query("SELECT n, v FROM versioned") == [(2, 3)]


def test_a_refused_row_keeps_what_the_table_held_for_its_key(cli, db, load):
    prepared(cli, db, "plain")
    load("plain", {"id": "a", "n": 5})
    load("plain", {"id": "a", "n": 500}, {"id": "new", "n": 501}, {"n": 502})

    held = dict(db.query("SELECT coalesce(key->>'id', '-'), held::text FROM nightshift.rejects"))

    assert held == {"a": '{"n": 5, "id": "a"}', "new": "null", "-": None}


def test_a_refused_infinity_is_kept_as_the_number_and_loads_once_the_column_can_hold_it(
    cli, db, feed
):
    values = {"JOBS_PACKAGE": "tests.value_jobs"}
    feed.serve({"rows": [{"id": "b", "n": 2, "price": {"$float": "-inf"}}]})
    assert cli("run", "numbers", VALUES_URL=feed.url, **values).returncode == 0
    assert db.scalar("SELECT \"row\"->>'price' FROM nightshift.rejects") == "-Infinity"

    db.query("ALTER TABLE numbers ALTER COLUMN price TYPE numeric")
    replayed = cli("rejects", "numbers", "--replay", **values)

    assert replayed.stdout.strip() == "numbers: 1 loaded, 0 superseded, 0 still refused"
    assert db.query("SELECT price::text FROM numbers") == [("-Infinity",)]
