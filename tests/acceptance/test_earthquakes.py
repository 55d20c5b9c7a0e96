"""`run earthquakes` against a real feed server and a real PostgreSQL."""

from __future__ import annotations

import datetime as dt

from tests.support import load_fixture


def utc(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)


def row_versions(db) -> dict[str, str]:
    """Each row's xmin: it changes whenever the row is rewritten, even with equal values."""
    return dict(db.query("SELECT id, xmin::text FROM earthquakes"))


def test_run_loads_every_event_of_the_feed_with_its_types_and_values(cli, db, feed):
    result = cli("run", "earthquakes")

    assert result.returncode == 0, result.stderr
    assert db.scalar("SELECT count(*) FROM earthquakes") == 151
    assert db.scalar("SELECT count(DISTINCT id) FROM earthquakes") == 151
    # a negative magnitude and a negative depth, with nulls for what was not measured
    mag, depth, felt, cdi, mmi, nst, gap, time, updated, status, tsunami = db.query(
        "SELECT mag, depth_km, felt, cdi, mmi, nst, gap, time, updated, status, tsunami"
        " FROM earthquakes WHERE id = 'nc72719920'"
    )[0]
    assert (mag, depth, felt, cdi, mmi, nst, gap) == (-0.38, -1.15, None, None, None, 8, 160.0)
    assert time == utc(1478191616590)
    assert updated == utc(1478193896823)
    assert (status, tsunami) == ("reviewed", False)
    # an integer magnitude, a tsunami flag, and felt reports
    assert db.query("SELECT mag, tsunami, nst FROM earthquakes WHERE id = 'us100073yc'") == [
        (5.0, True, None)
    ]
    assert db.query("SELECT felt, cdi, mmi FROM earthquakes WHERE id = 'nc72719830'") == [
        (70, 4.2, 4.94)
    ]
    types = dict(
        db.query(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_name = 'earthquakes'"
        )
    )
    assert types["time"] == types["updated"] == "timestamp with time zone"
    assert types["mag"] == "double precision"
    assert (
        db.scalar(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = 'earthquakes'::regclass AND contype = 'p'"
        )
        == "PRIMARY KEY (id)"
    )
    # the watermark is the newest revision loaded
    newest = max(f["properties"]["updated"] for f in load_fixture()["features"])
    assert dt.datetime.fromisoformat(db.cursor("earthquakes", feed.url)) == utc(newest)
    [run] = db.runs()
    assert (run["status"], run["rows"], run["changed"], run["trigger"]) == (
        "succeeded", 151, 151, "manual",
    )  # fmt: skip


def test_a_second_run_of_the_same_feed_changes_nothing(cli, db):
    assert cli("run", "earthquakes").returncode == 0
    before = row_versions(db)

    result = cli("run", "earthquakes")

    assert result.returncode == 0, result.stderr
    assert row_versions(db) == before
    assert db.runs()[-1]["changed"] == 0
    [finished] = result.events("job_finished")
    assert finished["changed"] == 0


def test_revised_events_update_exactly_those_rows(cli, db, feed):
    assert cli("run", "earthquakes").returncode == 0
    before = row_versions(db)
    document = load_fixture()
    newest = max(f["properties"]["updated"] for f in document["features"])
    revised = {}
    for offset, feature in enumerate(document["features"][10:13], start=1):
        feature["properties"]["mag"] = 9.5 + offset / 10
        feature["properties"]["status"] = "reviewed"
        feature["properties"]["updated"] = newest + offset * 1000
        revised[feature["id"]] = feature["properties"]["mag"]
    feed.serve(document)

    result = cli("run", "earthquakes")

    assert result.returncode == 0, result.stderr
    after = row_versions(db)
    assert {i for i in after if after[i] != before[i]} == set(revised)
    assert dict(db.query("SELECT id, mag FROM earthquakes WHERE mag > 9")) == revised
    assert db.scalar("SELECT count(*) FROM earthquakes") == 151
    assert db.runs()[-1]["changed"] == 3


def test_a_batch_holding_one_key_twice_loads_the_later_row(cli, db, feed):
    document = load_fixture()
    first = document["features"][0]
    again = {**first, "properties": {**first["properties"]}}
    again["properties"]["mag"] = 4.4
    again["properties"]["updated"] = first["properties"]["updated"] + 60_000
    document["features"].append(again)
    feed.serve(document)

    result = cli("run", "earthquakes")

    assert result.returncode == 0, result.stderr
    assert db.query("SELECT mag FROM earthquakes WHERE id = %s", (first["id"],)) == [(4.4,)]
    assert db.scalar("SELECT count(*) FROM earthquakes") == 151
