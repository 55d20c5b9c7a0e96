"""The queue always drains: whatever rows `nightshift.triggers` holds (windows across and beyond
the dates a run can take, BC, infinity, parameters of every JSON shape, nested too deep to
read, named like credentials), each request is either served by a run with exactly what it
asked or settled as refused with its reason, within a bounded time, and a request queued after
them runs.

The rows are written as the superuser with the INSERT's checks switched off (as rows queued
before migration 0008, or by a role that bypasses them, are), for one real worker serving the
tests' own jobs; hypothesis generates them, a few requests per example.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import psycopg2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support import wait_for

JOBS = {"JOBS_PACKAGE": "tests.queue_jobs"}
# Each example waits at most this long for its requests to drain: the bound.
DRAIN_SECONDS = 10
RESERVED = ("full_refresh", "since", "until")

# A date as PostgreSQL takes it, and whether a run can take it (a Python date holds it).
good_dates = st.dates(min_value=dt.date(1, 1, 1), max_value=dt.date(9999, 12, 31)).map(
    lambda d: (d.isoformat(), True)
)
bad_dates = st.one_of(
    st.sampled_from(["infinity", "-infinity", "10000-01-01", "5874897-12-31", "4713-01-01 BC"]),
    st.integers(10000, 5874897).map(lambda y: f"{y}-06-15"),
    st.integers(1, 4713).map(lambda y: f"{y:04d}-02-28 BC"),
).map(lambda text: (text, False))
dates = st.one_of(st.just((None, True)), good_dates, bad_dates)

# Text jsonb and the driver both take: no NUL, no lone surrogate.
texts = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=12)
names = st.one_of(texts, st.sampled_from(["api_key", "password", "access_token", "region"]))
good_params = st.dictionaries(
    names.filter(lambda name: name not in RESERVED), texts, max_size=4
).map(lambda params: (json.dumps(params), True))
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=6,
)
bad_params = st.one_of(
    json_values.filter(lambda v: not isinstance(v, dict)).map(json.dumps),  # not an object
    st.dictionaries(names, json_values.filter(lambda v: not isinstance(v, str)), min_size=1).map(
        json.dumps
    ),  # a value that is not a string
    st.sampled_from(RESERVED).map(lambda name: json.dumps({name: "2024-01-01"})),
    st.integers(1000, 5000).map(lambda depth: f'{{"a": {"[" * depth}{"]" * depth}}}'),
).map(lambda text: (text, False))
requests = st.tuples(dates, dates, st.one_of(good_params, bad_params), st.booleans())


@pytest.fixture
def worker(workers, cli, db):
    """A worker serving the queue, whose INSERT checks are off (as before migration 0008)."""
    assert cli("migrate", **JOBS).returncode == 0
    db.query("ALTER TABLE nightshift.triggers DISABLE TRIGGER check_trigger")
    _, tail = workers(**JOBS)
    tail.wait_event("trigger_listener_started")
    return tail


@settings(max_examples=60)
@given(batch=st.lists(requests, min_size=1, max_size=8))
def test_the_queue_always_drains_and_a_request_queued_after_runs(worker, db, batch) -> None:
    queued: dict[int, tuple[Any, ...]] = {}  # request id → (since, until, params, servable)
    for (since, since_ok), (until, until_ok), (params, params_ok), full_refresh in batch:
        request_id = insert(db, since, until, params, full_refresh)
        if request_id is not None:  # None: refused by the table's own CHECK, or joined
            queued[request_id] = (since, until, params, since_ok and until_ok and params_ok)
    after = insert(db, None, None, json.dumps({"sentinel": uuid.uuid4().hex}), False)

    wait_for(
        lambda: drained(db, [*queued, after]), timeout=DRAIN_SECONDS, what="the queue to drain"
    )

    outcome = outcomes(db, [*queued, after])
    assert outcome[after][0] == "succeeded"
    for request_id, (since, until, params, servable) in queued.items():
        status, refused, error, got = outcome[request_id]
        if servable:
            assert (status, refused) == ("succeeded", None), error
            assert got == (json.loads(params), since, until)  # what it asked, credentials too
        else:
            assert status == "refused"
            assert refused == error
            assert error.startswith(f"request {request_id} refused: ")
            assert "\n" not in error and len(error) <= 2000
    assert db.scalar("SELECT count(*) FROM nightshift.triggers WHERE claimed_at IS NULL") == 0


def insert(db, since, until, params: str, full_refresh: bool) -> int | None:
    try:
        return db.scalar(
            "INSERT INTO nightshift.triggers (job, since, until, params, full_refresh)"
            " VALUES ('plain', %s, %s, %s::jsonb, %s) RETURNING id",
            (since, until, params, full_refresh),
        )
    except psycopg2.errors.CheckViolation:  # since after until, by the table's own CHECK
        return None


def drained(db, ids: list[int]) -> bool:
    """Every request claimed, and its run (served or refused) finished."""
    return db.scalar(
        "SELECT count(*) FROM nightshift.triggers t JOIN nightshift.runs r ON r.id = t.run_id"
        " WHERE t.id = ANY(%s) AND r.finished_at IS NOT NULL",
        (ids,),
    ) == len(ids)


def outcomes(db, ids: list[int]) -> dict[int, tuple]:
    """By request: its run's status, the request's `refused`, the run's error, and what the
    run received (params, since and until as ISO text), if it ran."""
    rows = db.query(
        "SELECT t.id, r.status, t.refused, r.error, s.params, s.since::text, s.until::text"
        " FROM nightshift.triggers t JOIN nightshift.runs r ON r.id = t.run_id"
        " LEFT JOIN plain_served s ON s.run_id = r.id WHERE t.id = ANY(%s)",
        (ids,),
    )
    return {row[0]: (row[1], row[2], row[3], tuple(row[4:])) for row in rows}
