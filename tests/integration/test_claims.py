"""Claiming a queued request and settling one no run can serve, against a real PostgreSQL:
a claim that meets a request no run can take leaves it pending (for the queue watcher) and
never fails in the driver; a settlement happens once, however many workers try; a claimed
request keeps a credential's value only in the run, and an opening replayed after a lost
COMMIT still hands the job the real value."""

from __future__ import annotations

import pytest

from tests.integration.conftest import items_job
from worker.registry import Job
from worker.run.begin import OpenRun
from worker.run.errors import RequestRefused
from worker.run.refusals import refuse_request, refuse_resume
from worker.run.request import QUEUED, RunRequest
from worker.store import claims
from worker.store.migrate import migrate
from worker.store.records import CutShortRun

RANGE = "(0001-01-01 to 9999-12-31)"


@pytest.fixture
def job(conn) -> Job:
    declared = items_job()
    with conn, conn.cursor() as cur:
        migrate(cur, [declared])
    return declared


def unchecked(db, since: str) -> int:
    """A request past nightshift.check_trigger, as one queued before migration 0008."""
    db.query("ALTER TABLE nightshift.triggers DISABLE TRIGGER check_trigger")
    try:
        return db.scalar(
            "INSERT INTO nightshift.triggers (job, since) VALUES ('items', %s) RETURNING id",
            (since,),
        )
    finally:
        db.query("ALTER TABLE nightshift.triggers ENABLE TRIGGER check_trigger")


def test_a_claim_meeting_a_request_no_run_can_take_leaves_it_pending(conn, db, job) -> None:
    bad = unchecked(db, "10000-01-01")
    good = db.scalar("INSERT INTO nightshift.triggers (job) VALUES ('items') RETURNING id")
    opening = OpenRun(job, RunRequest(kind=QUEUED), dyno="test.1", ensure_schema=False)

    with pytest.raises(RequestRefused) as refused, conn, conn.cursor() as cur:
        opening(cur)

    assert str(refused.value) == (
        f"request {bad} cannot be served: since '10000-01-01' is not a date {RANGE}"
    )
    assert db.query("SELECT id FROM nightshift.triggers WHERE claimed_at IS NULL ORDER BY id") == [
        (bad,),
        (good,),
    ]
    assert db.runs() == []  # nothing recorded: the watcher settles it


def test_a_request_is_settled_once_however_many_workers_try(conn, db, job) -> None:
    bad = unchecked(db, "infinity")
    with conn, conn.cursor() as cur:
        [stored] = claims.oldest_pending_requests(cur)
    why = f"since 'infinity' is not a date {RANGE}"

    with conn, conn.cursor() as cur:
        first = refuse_request(cur, stored, why, "worker.1")
    with conn, conn.cursor() as cur:
        second = refuse_request(cur, stored, why, "worker.2")

    assert first is not None and second is None
    assert (first.job, first.request_id, first.error) == (
        "items",
        bad,
        f"request {bad} refused: {why}",
    )
    assert [(r["id"], r["status"], r["trigger"], r["error"]) for r in db.runs()] == [
        (first.run_id, "refused", "queued", first.error)
    ]
    assert db.query("SELECT run_id, refused, claimed_by FROM nightshift.triggers") == [
        (first.run_id, first.error, "worker.1")
    ]


def test_a_resume_is_refused_once(conn, db, job) -> None:
    cut_short = db.scalar(
        "INSERT INTO nightshift.runs (job, trigger, status) VALUES ('items', 'queued',"
        " 'interrupted') RETURNING id"
    )
    run = CutShortRun("items", cut_short, '{"since": "10000-01-01"}')
    with conn, conn.cursor() as cur:
        first = refuse_resume(cur, run, "why", "worker.1")
    with conn, conn.cursor() as cur:
        second = refuse_resume(cur, run, "why", "worker.2")

    assert first is not None and second is None
    assert first.error == f"resume of run {cut_short} refused: why"
    assert db.query("SELECT resumed_by FROM nightshift.runs WHERE id = %s", (cut_short,)) == [
        (first.run_id,)
    ]


def test_a_replayed_opening_hands_the_job_the_credential_the_queue_no_longer_keeps(
    conn, db, job
) -> None:
    secret = "replay-s3cr3t-value"
    db.query(
        "INSERT INTO nightshift.triggers (job, params) VALUES ('items', %s)",
        (f'{{"api_key": "{secret}", "region": "ca"}}',),
    )
    opening = OpenRun(job, RunRequest(kind=QUEUED), dyno="test.1", ensure_schema=False)
    with conn, conn.cursor() as cur:
        first = opening(cur)  # committed; say its answer never reached us
    with conn, conn.cursor() as cur:
        again = opening(cur)

    assert again.run_id == first.run_id
    assert dict(again.request.params) == {"api_key": secret, "region": "ca"}
    assert db.query("SELECT params FROM nightshift.triggers") == [
        ({"api_key": "***", "region": "ca"},)
    ]
