"""`@job` refuses a declaration that cannot load safely; `discover` and `lookup` find jobs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from worker.errors import InvalidJob, UnknownJob
from worker.registry import Job, discover, job, lookup

VALID: dict[str, Any] = {
    "table": "items",
    "columns": {"id": "text", "name": "text", "updated": "timestamptz"},
    "key": "id",
}


def rows(ctx: Any) -> Iterator[dict[str, Any]]:
    yield {"id": "a"}


@pytest.fixture(autouse=True)
def no_schedule_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ROWS_SCHEDULE", "EARTHQUAKES_SCHEDULE"):
        monkeypatch.delenv(name, raising=False)


def declare(**overrides: Any) -> Job:
    return job(**{**VALID, **overrides})(rows).__nightshift_job__


def test_a_valid_declaration_returns_the_function_carrying_its_job():
    decorated = job(**VALID, schedule="0 3 * * 1", timezone="Europe/Paris", cursor="updated")(rows)

    assert decorated is rows
    assert rows.__nightshift_job__ == Job(
        name="rows",
        function=rows,
        table="items",
        columns={"id": "text", "name": "text", "updated": "timestamptz"},
        key=("id",),
        schedule="0 3 * * 1",
        timezone="Europe/Paris",
        mode="upsert",
        cursor="updated",
        schema="public",
    )


def test_a_key_given_as_a_list_becomes_a_tuple():
    assert declare(key=["id", "name"]).key == ("id", "name")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"key": ()}, "job 'rows': declare a key; every load must be safe to replay"),
        ({"key": []}, "job 'rows': declare a key; every load must be safe to replay"),
        ({"key": "missing"}, "job 'rows': 'missing' is not a declared column"),
        ({"key": ("id", "region")}, "job 'rows': 'region' is not a declared column"),
        ({"cursor": "changed_at"}, "job 'rows': 'changed_at' is not a declared column"),
        ({"mode": "merge"}, "job 'rows': mode must be one of upsert, append"),
        ({"timezone": "Mars/Olympus_Mons"}, "job 'rows': unknown timezone 'Mars/Olympus_Mons'"),
        ({"timezone": "../../etc/passwd"}, "job 'rows': unknown timezone '../../etc/passwd'"),
        (
            {"schedule": "0 3 * *"},
            "job 'rows': bad schedule '0 3 * *': expected 5 cron fields (or 6 with seconds), got 4",
        ),
        ({"schedule": "0 3 * * 8"}, "job 'rows': bad schedule '0 3 * * 8': bad day of week '8'"),
        (
            {"columns": {"id": "text", "name": "text; drop table x"}},
            "job 'rows': column 'name' has an odd type 'text; drop table x'",
        ),
        ({"columns": {}}, "job 'rows': declare the table's columns"),
        (
            {"columns": {"id": "text", "Name": "text"}},
            "job 'rows': column 'Name' must match ^[a-z_][a-z0-9_]{0,62}$",
        ),
        ({"table": "items;"}, "job 'rows': table 'items;' must match ^[a-z_][a-z0-9_]{0,62}$"),
    ],
)
def test_an_invalid_declaration_raises_invalid_job_saying_what_is_wrong(overrides, message):
    with pytest.raises(InvalidJob) as raised:
        declare(**overrides)

    assert str(raised.value) == message


def test_a_schedule_with_an_out_of_range_minute_is_refused():
    with pytest.raises(InvalidJob) as raised:
        declare(schedule="61 * * * *")

    assert str(raised.value).startswith("job 'rows': bad schedule '61 * * * *': ")


def test_a_bad_schedule_override_in_the_environment_is_refused(monkeypatch):
    monkeypatch.setenv("ROWS_SCHEDULE", "0 3 * * 9")

    with pytest.raises(InvalidJob) as raised:
        declare(schedule="0 3 * * *")

    assert str(raised.value) == "job 'rows': bad schedule '0 3 * * 9': bad day of week '9'"


@pytest.mark.parametrize(
    "sql_type", ["numeric(12, 2)", "varchar(64)", "text[]", "double precision"]
)
def test_ordinary_column_types_are_accepted(sql_type):
    assert declare(columns={"id": "text", "value": sql_type}).columns["value"] == sql_type


def test_discover_finds_the_earthquakes_job_in_the_jobs_package():
    found = discover()

    earthquakes = found["earthquakes"]
    assert earthquakes.name == "earthquakes"
    assert (earthquakes.schema, earthquakes.table) == ("public", "earthquakes")
    assert (earthquakes.key, earthquakes.cursor, earthquakes.mode) == (("id",), "updated", "upsert")
    assert (earthquakes.schedule, earthquakes.timezone) == ("*/15 * * * *", "UTC")


def test_lookup_returns_the_job_of_that_name():
    jobs = discover()

    assert lookup(jobs, "earthquakes") is jobs["earthquakes"]


def test_lookup_of_an_unknown_name_raises_unknown_job_listing_the_known_jobs():
    with pytest.raises(UnknownJob) as raised:
        lookup(discover(), "earthquake")

    assert (
        str(raised.value)
        == "unknown job 'earthquake'; known jobs: earthquakes, earthquakes_history"
    )


def test_lookup_lists_the_known_jobs_sorted_or_says_none():
    a_job = declare()

    with pytest.raises(UnknownJob) as several:
        lookup({"zeta": a_job, "alpha": a_job}, "beta")
    with pytest.raises(UnknownJob) as empty:
        lookup({}, "beta")

    assert str(several.value) == "unknown job 'beta'; known jobs: alpha, zeta"
    assert str(empty.value) == "unknown job 'beta'; known jobs: none"
