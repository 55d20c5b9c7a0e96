"""The transaction that opens a run, replayed after a COMMIT whose answer was lost, against a
real PostgreSQL: the replay finds the run the first attempt recorded and records no other."""

from __future__ import annotations

import datetime as dt

from tests.integration.conftest import items_job
from worker.run.begin import OpenRun
from worker.run.request import SCHEDULE, RunRequest


def test_a_replayed_opening_finds_the_run_its_first_attempt_committed(conn, db) -> None:
    """Not refused as a fire time "already served", by the very run serving it."""
    fire_time = dt.datetime(2026, 11, 27, 2, 0, tzinfo=dt.UTC)
    request = RunRequest(kind=SCHEDULE, fire_time=fire_time)
    opening = OpenRun(items_job(), request, dyno="test.1", ensure_schema=True)
    with conn, conn.cursor() as cur:
        first = opening(cur)  # committed; say its answer never reached us
    with conn, conn.cursor() as cur:
        again = opening(cur)  # the same session still holds the job's lock
    assert again.run_id == first.run_id
    assert [run["id"] for run in db.runs()] == [first.run_id]
    assert db.runs()[0]["status"] == "running"
    assert again.request.fire_time == fire_time


def test_a_new_opening_records_a_new_run(conn, db) -> None:
    job = items_job()
    with conn, conn.cursor() as cur:
        first = OpenRun(job, RunRequest(), dyno="test.1", ensure_schema=True)(cur)
    with conn, conn.cursor() as cur:
        second = OpenRun(job, RunRequest(), dyno="test.1", ensure_schema=True)(cur)
    assert second.run_id != first.run_id
    assert [(run["id"], run["status"]) for run in db.runs()] == [
        (first.run_id, "abandoned"),
        (second.run_id, "running"),
    ]
