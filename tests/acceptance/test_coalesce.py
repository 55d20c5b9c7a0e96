"""Coalesced requests: a request identical to one still pending joins it instead of queueing
another run (a double-clicked "Run now"), from a plain INSERT or the CLI; a different window,
parameters or full_refresh still queues; once a run has claimed the request, a new one queues.

Every INSERT here goes through the app role's own connections to the real server, as a web app
sharing the database would.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import Iterator

import psycopg2
import pytest

from tests.support import wait_for

JOINED = re.compile(
    r"NOTICE:  nightshift: joined pending request (\d+) for job earthquakes"
    r" \(queued \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\)\n"
)
INSERT = "INSERT INTO nightshift.triggers (job) VALUES ('earthquakes') RETURNING id"


@pytest.fixture
def connect(cli, db) -> Iterator:
    """`connect()`: a new autocommit connection as the app role (the schema migrated first)."""
    assert cli("migrate").returncode == 0
    opened: list = []

    def new(autocommit: bool = True) -> psycopg2.extensions.connection:
        conn = psycopg2.connect(db.url)
        conn.autocommit = autocommit
        opened.append(conn)
        return conn

    yield new
    for conn in opened:
        conn.close()


def insert(conn, sql: str = INSERT, args: object = None) -> tuple[int | None, list[str]]:
    """Run one INSERT … RETURNING id: (the new request's id or None, the notices it raised)."""
    del conn.notices[:]
    with conn.cursor() as cur:
        cur.execute(sql, args)
        row = cur.fetchone()
    return (row[0] if row else None), list(conn.notices)


def joined(notices: list[str]) -> int:
    [notice] = notices
    match = JOINED.fullmatch(notice)
    assert match, notice
    return int(match[1])


def pending(db) -> list[tuple]:
    return db.query(
        "SELECT id, params, full_refresh, since, until FROM nightshift.triggers"
        " WHERE claimed_at IS NULL ORDER BY id"
    )


def test_identical_inserts_join_the_pending_request_say_so_and_notify_once(connect, db):
    conn, listener = connect(), connect()
    with listener.cursor() as cur:
        cur.execute("LISTEN nightshift_triggers")

    first, notices = insert(conn)
    assert notices == []
    for _ in range(29):  # the rest of a 30-fold click
        again, notices = insert(conn)
        assert again is None  # RETURNING gives no row: nothing was inserted
        assert joined(notices) == first
    with conn.cursor() as cur:
        cur.execute("SELECT pg_notify('nightshift_triggers', 'sentinel')")

    assert [row[0] for row in pending(db)] == [first]

    def heard() -> list[str]:
        listener.poll()
        payloads = [n.payload for n in listener.notifies]
        return payloads if "sentinel" in payloads else []

    # Notifications from one session arrive in order: all of them are in once the sentinel is.
    assert wait_for(heard, timeout=10, what="the sentinel NOTIFY") == ["earthquakes", "sentinel"]


def test_a_request_differing_in_window_params_or_full_refresh_queues_its_own(connect, db):
    conn = connect()
    columns = "INSERT INTO nightshift.triggers (job, params, full_refresh, since, until)"
    requests = [
        ("{}", False, None, None),
        ("{}", False, "2024-01-01", "2024-01-31"),
        ("{}", False, "2024-01-02", "2024-01-31"),  # another start
        ("{}", False, "2024-01-01", "2024-02-29"),  # another end
        ("{}", False, "2024-01-01", None),  # an open end
        ('{"region": "ca"}', False, None, None),
        ('{"region": "nv"}', False, None, None),
        ("{}", True, None, None),
    ]
    sql = f"{columns} VALUES ('earthquakes', %s, %s, %s, %s) RETURNING id"

    ids = [insert(conn, sql, request) for request in requests]
    again = [insert(conn, sql, request) for request in requests]

    assert [notices for _, notices in ids] == [[]] * len(requests)
    assert None not in [request_id for request_id, _ in ids]
    assert [(request_id, joined(notices)) for request_id, notices in again] == [
        (None, request_id) for request_id, _ in ids
    ]
    assert len(pending(db)) == len(requests)


def test_concurrent_identical_inserts_leave_exactly_one_pending_request(connect, db):
    """Sixteen connections insert the same request while the first is still uncommitted: each
    waits for it, then joins it. Then sixteen more race freely, released together."""
    holder = connect(autocommit=False)
    first, _ = insert(holder)  # not committed yet: nobody else can see it
    results: dict[int, tuple[int | None, list[str]]] = {}

    def request(n: int, start: threading.Barrier | None = None) -> None:
        conn = connect()
        if start is not None:
            start.wait(timeout=30)
        results[n] = insert(conn)

    threads = [threading.Thread(target=request, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()

    def waiting() -> bool:
        return db.scalar(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event = 'advisory'"
        ) == len(threads)

    wait_for(waiting, timeout=30, what="every INSERT to wait for the uncommitted one")
    holder.commit()
    for thread in threads:
        thread.join(timeout=30)

    assert {n: (rid, joined(notices)) for n, (rid, notices) in results.items()} == {
        n: (None, first) for n in range(16)
    }
    assert [row[0] for row in pending(db)] == [first]

    # Claimed (a run took it): the next identical requests queue one new request between them.
    db.query("UPDATE nightshift.triggers SET claimed_at = now(), claimed_by = 'test'")
    results.clear()
    start = threading.Barrier(16)
    threads = [threading.Thread(target=request, args=(n, start)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    [(second, notices)] = [result for result in results.values() if result[0] is not None]
    assert notices == []
    assert sorted(joined(n) for rid, n in results.values() if rid is None) == [second] * 15
    assert [row[0] for row in pending(db)] == [second]


def test_a_transaction_that_cannot_see_a_concurrent_identical_request_fails_instead(connect, db):
    """REPEATABLE READ keeps its first snapshot, so its INSERT cannot see a request committed
    since: the unique index refuses the duplicate rather than queueing a second run."""
    late = connect(autocommit=False)
    late.set_session(isolation_level="REPEATABLE READ")
    with late.cursor() as cur:
        cur.execute("SELECT count(*) FROM nightshift.triggers")  # the snapshot is taken here
    first, _ = insert(connect())

    with pytest.raises(psycopg2.errors.UniqueViolation):
        insert(late)
    late.rollback()

    assert [row[0] for row in pending(db)] == [first]


def test_the_cli_says_it_joined_the_pending_request_and_queues_a_different_window(cli, db):
    first = cli("trigger", "earthquakes", "--param", "region=ca")
    again = cli("trigger", "earthquakes", "--param", "region=ca")
    other = cli("trigger", "earthquakes", "--param", "region=ca", "--since", "2024-01-01")

    assert (first.returncode, again.returncode, other.returncode) == (0, 0, 0)
    assert first.stdout == "queued request 1 to run earthquakes; a running worker picks it up\n"
    [(requested_at,)] = db.query(
        "SELECT to_char(requested_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')"
        " FROM nightshift.triggers WHERE id = 1"
    )
    assert again.stdout == (
        f"joined pending request 1 for earthquakes (queued at {requested_at} UTC);"
        " no new run queued\n"
    )
    # (A joined INSERT took an id from the sequence all the same: ids may skip.)
    [_, (second, params, _, since, _)] = pending(db)
    assert other.stdout == (
        f"queued request {second} to run earthquakes; a running worker picks it up\n"
    )
    assert (params, since) == ({"region": "ca"}, dt.date(2024, 1, 1))


def test_a_request_identical_to_one_a_run_has_claimed_queues_again(workers, cli, db, gate):
    """A run that already started may miss data that is newer than it: a new request while it
    runs queues another run, which runs once the first is done; joins ride along with it."""
    assert cli("migrate").returncode == 0
    gate.install(after=100)  # the first run stops in front of its second batch
    _, tail = workers(EARTHQUAKES_SCHEDULE="off", BATCH_SIZE="100")
    tail.wait_event("trigger_listener_started")
    conn = psycopg2.connect(db.url)
    conn.autocommit = True
    try:
        first, _ = insert(conn)
        started = tail.wait_event("job_started")
        wait_for(gate.waiting, timeout=30, what="the first run to reach the gate")
        assert (
            db.scalar("SELECT run_id FROM nightshift.triggers WHERE id = %s", (first,))
            == (started["run_id"])
        )

        second, notices = insert(conn)  # the first is claimed: this one queues
        third, more = insert(conn)  # ... and this one joins it
    finally:
        conn.close()
    assert (notices, third, joined(more)) == ([], None, second)

    gate.open()

    def both_done() -> list[tuple]:
        rows = db.query(
            "SELECT t.id, r.status FROM nightshift.triggers t"
            " JOIN nightshift.runs r ON r.id = t.run_id WHERE r.status <> 'running' ORDER BY t.id"
        )
        return rows if len(rows) == 2 else []

    assert wait_for(both_done, timeout=60, what="both requests to run") == [
        (first, "succeeded"),
        (second, "succeeded"),
    ]
    assert db.scalar("SELECT count(*) FROM nightshift.runs") == 2
    assert db.scalar("SELECT count(*) FROM nightshift.triggers") == 2


def test_migrating_folds_requests_queued_twice_before_into_the_oldest(cli, db):
    """A database that queued duplicates before migration 0006 keeps the oldest of each kind."""
    assert cli("migrate").returncode == 0
    db.query(
        "DROP TRIGGER join_pending_request ON nightshift.triggers;"
        " DROP FUNCTION nightshift.join_pending_request();"
        " DROP INDEX nightshift.triggers_one_pending_per_request;"
        " DELETE FROM nightshift.schema_migrations WHERE version = 6"
    )
    db.query(
        "INSERT INTO nightshift.triggers (job, since, claimed_at) VALUES"
        " ('earthquakes', NULL, now()), ('earthquakes', NULL, NULL),"
        " ('earthquakes', NULL, NULL), ('earthquakes', '2024-01-01', NULL),"
        " ('earthquakes', NULL, NULL), ('earthquakes', '2024-01-01', NULL)"
    )

    migrated = cli("migrate")

    assert migrated.returncode == 0, migrated.stderr
    assert "0006_coalesce_requests" in migrated.stdout
    assert [row[0] for row in db.query("SELECT id FROM nightshift.triggers ORDER BY id")] == [
        1,
        2,
        4,
    ]
    again = cli("trigger", "earthquakes")
    assert again.stdout.startswith("joined pending request 2 for earthquakes")
