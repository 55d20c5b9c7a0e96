"""A fire time that finds its job busy (a manual, queued or resumed run holds its lock) runs
once the lock frees, within its misfire grace; past the grace it is recorded as missed, with
why — never dropped silently."""

from __future__ import annotations

import datetime as dt

import psycopg2
import pytest

from tests.support import wait_for

NAMESPACE = 0x4E53  # worker.store.queries.LOCK_NAMESPACE


class Holder:
    """A session holding the earthquakes job's lock, as a run elsewhere would."""

    def __init__(self, db) -> None:
        self.conn = psycopg2.connect(
            host="127.0.0.1", port=db.cluster.port, user="postgres", dbname=db.name
        )
        self.conn.autocommit = True
        with self.conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s, hashtext('earthquakes'))", (NAMESPACE,))

    def release(self) -> None:
        self.conn.close()  # the session ends, and its lock with it


@pytest.fixture
def busy(db):
    holder = Holder(db)
    yield holder
    holder.release()


def test_a_busy_fire_time_runs_once_the_lock_frees_within_its_grace(workers, cli, db, busy):
    # Every 20 s: a misfire grace of 10 s.
    _, tail = workers(EARTHQUAKES_SCHEDULE="*/20 * * * * *")

    waiting = tail.wait_event("job_waiting", timeout=40)
    busy.release()
    started = tail.wait_event("job_started", timeout=15)
    finished = tail.wait_event("job_finished", timeout=30)

    assert waiting["reason"] == "the job is running elsewhere"
    assert started["trigger"] == "schedule"
    fire_time = dt.datetime.fromisoformat(started["fire_time"])
    assert dt.datetime.fromisoformat(waiting["until"]) == fire_time + dt.timedelta(seconds=10)
    assert finished["status"] == "succeeded"
    assert db.query(
        "SELECT trigger, status FROM nightshift.runs WHERE scheduled_for = %s", (fire_time,)
    ) == [("schedule", "succeeded")]
    assert tail.events("job_skipped") == []


def test_a_fire_time_still_busy_past_its_grace_is_recorded_missed_with_why(workers, cli, db, busy):
    # Every 10 s: a misfire grace of 5 s.
    _, tail = workers(EARTHQUAKES_SCHEDULE="*/10 * * * * *")

    missed = tail.wait_event("fire_time_missed", timeout=40)

    [(status, error, scheduled_for)] = db.query(
        "SELECT status, error, scheduled_for FROM nightshift.runs WHERE id = %s",
        (missed["run_id"],),
    )
    assert status == "missed"
    assert error.startswith("the job was running elsewhere from its fire time until its misfire")
    assert scheduled_for == dt.datetime.fromisoformat(missed["fire_time"])
    # Once the job is free again, the next fire time runs.
    busy.release()
    wait_for(
        lambda: db.scalar("SELECT count(*) FROM nightshift.runs WHERE status = 'succeeded'"),
        timeout=40,
        what="the next fire time's run",
    )
    assert tail.events("job_skipped") == []
