"""What each driver error means: the texts and codes psycopg2 really produces (see
../shared/notes/postgres-faults.md), classified in worker/classify.py."""

from __future__ import annotations

import threading

import psycopg2
import pytest

from config import Settings
from worker.database.backoff import Backoff
from worker.database.classify import Action, classify, describe_error
from worker.database.errors import StandbyError


def operational(text: str) -> psycopg2.OperationalError:
    return psycopg2.OperationalError(text)


CONNECT = 'connection to server at "10.0.0.1", port 5432 failed: '


@pytest.mark.parametrize(
    ("text", "action", "cause"),
    [
        (
            "server closed the connection unexpectedly\n\tThis probably means the server"
            " terminated abnormally\n\tbefore or while processing the request.\n",
            Action.RESOLVE,
            "session_lost",
        ),
        ("SSL SYSCALL error: EOF detected\n", Action.RESOLVE, "session_lost"),
        ("SSL connection has been closed unexpectedly\n", Action.RESOLVE, "session_lost"),
        (
            CONNECT + "Connection refused\n\tIs the server running on that host and accepting"
            " TCP/IP connections?\n",
            Action.RESOLVE,
            "connection_refused",
        ),
        (
            CONNECT + 'FATAL:  password authentication failed for user "u5ab"\n',
            Action.RESOLVE,
            "auth_failed",
        ),
        (CONNECT + 'FATAL:  role "u5ab" does not exist\n', Action.RESOLVE, "auth_failed"),
        (
            CONNECT + "FATAL:  the database system is starting up\n",
            Action.BACKOFF,
            "server_starting",
        ),
        (
            CONNECT + "FATAL:  the database system is not yet accepting connections\n",
            Action.BACKOFF,
            "server_starting",
        ),
        (
            CONNECT + "FATAL:  the database system is in recovery mode\n",
            Action.BACKOFF,
            "server_starting",
        ),
        (
            CONNECT + "FATAL:  the database system is shutting down\n",
            Action.RESOLVE,
            "server_shutting_down",
        ),
        (
            CONNECT + "FATAL:  sorry, too many clients already\n",
            Action.BACKOFF,
            "too_many_connections",
        ),
        (
            CONNECT + "FATAL:  remaining connection slots are reserved for non-replication"
            " superuser connections\n",
            Action.BACKOFF,
            "too_many_connections",
        ),
        (
            CONNECT + 'FATAL:  too many connections for role "u5ab"\n',
            Action.BACKOFF,
            "too_many_connections",
        ),
        (CONNECT + "timeout expired\n", Action.RESOLVE, "timeout"),
        (
            'could not translate host name "ec2-x.compute-1.amazonaws.com" to address',
            Action.RESOLVE,
            "dns",
        ),
        (
            "no answer from the server for 10 s; the connection is presumed dead",
            Action.RESOLVE,
            "no_answer",
        ),
    ],
)
def test_connection_and_session_failures_without_a_sqlstate_are_read_from_their_text(
    text, action, cause
):
    verdict = classify(operational(text))

    assert (verdict.action, verdict.cause) == (action, cause)


def test_an_interface_error_on_a_closed_connection_is_a_lost_session():
    verdict = classify(psycopg2.InterfaceError("connection already closed"))

    assert (verdict.action, verdict.cause) == (Action.RESOLVE, "session_lost")


def test_a_standby_found_at_connect_time_means_resolve_again():
    verdict = classify(StandbyError("the server is a read-only standby (pg_is_in_recovery)"))

    assert (verdict.action, verdict.cause) == (Action.RESOLVE, "read_only")


@pytest.mark.parametrize(
    ("sql", "action"),
    [
        ("SELECT 1/0", Action.FATAL),  # 22012 data error
        ("SELECT 'x'::int", Action.FATAL),  # 22P02
        ("SELECT * FROM no_such_table", Action.FATAL),  # 42P01
    ],
)
def test_data_and_sql_errors_are_fatal(db, sql, action):
    conn = psycopg2.connect(db.url)
    try:
        with conn.cursor() as cur, pytest.raises(psycopg2.Error) as raised:
            cur.execute(sql)
        assert classify(raised.value, conn).action is action
        assert describe_error(raised.value).startswith(raised.value.pgcode + " ")
    finally:
        conn.close()


def test_a_real_deadlock_retries_the_transaction(db):
    a, b = psycopg2.connect(db.url), psycopg2.connect(db.url)
    try:
        with a.cursor() as cur:
            cur.execute("CREATE TABLE pair (id int PRIMARY KEY)")
            cur.execute("INSERT INTO pair VALUES (1), (2)")
        a.commit()
        a.cursor().execute("SELECT * FROM pair WHERE id = 1 FOR UPDATE")
        b.cursor().execute("SELECT * FROM pair WHERE id = 2 FOR UPDATE")
        errors: list[BaseException] = []

        def cross(conn, row):
            try:
                conn.cursor().execute("SELECT * FROM pair WHERE id = %s FOR UPDATE", (row,))
            except psycopg2.Error as exc:
                errors.append(exc)
                conn.rollback()

        other = threading.Thread(target=cross, args=(a, 2))
        other.start()
        cross(b, 1)
        other.join(timeout=30)
        [deadlock] = errors
        assert deadlock.pgcode == "40P01"
        assert (classify(deadlock).action, classify(deadlock).cause) == (Action.RETRY, "deadlock")
    finally:
        a.close()
        b.close()


def test_describe_error_keeps_libpqs_reason_and_drops_the_preamble():
    text = CONNECT + 'FATAL:  password authentication failed for user "u5ab"\n'

    assert describe_error(operational(text)) == 'password authentication failed for user "u5ab"'


def test_backoff_doubles_with_jitter_up_to_its_cap_and_stops_at_its_budget():
    settings = Settings(db_retry_initial_delay=0.1, db_retry_max_delay=2.0, db_retry_timeout=60)
    backoff = Backoff(settings)

    delays = [backoff.next_delay() for _ in range(8)]

    ceilings = [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling
    assert Backoff(settings, budget=0).next_delay() is None


def test_backoff_stays_at_its_cap_after_thousands_of_attempts_without_overflowing():
    settings = Settings(db_retry_initial_delay=0.1, db_retry_max_delay=2.0, db_retry_timeout=60)
    backoff = Backoff(settings)
    backoff.attempts = 5000  # about 3 hours of a long outage at the cap

    delay = backoff.next_delay()

    assert delay is not None and 1.0 <= delay <= 2.0
