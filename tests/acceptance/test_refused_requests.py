"""A request no run can serve is settled once: recorded as a `refused` run with a one-line
reason (shown by `runs`, `runs --json` and the status page), the request marked refused, one
alert, and the job's next requests run. The INSERT itself refuses a window no run can take. No
row of Nightshift's own tables stops a poll loop: the queue, housekeeping (dead runs, resumes)
and catch-up each settle or pass over a hostile row, once, and go on.

Hostile rows are written as the superuser with the INSERT's checks switched off, as rows
queued before migration 0008 (or by a role that bypasses them) are; the worker serves the
tests' own jobs (tests/queue_jobs).
"""

from __future__ import annotations

import base64
import json

import psycopg2
import pytest

from config import Settings
from tests.support import wait_for
from worker.registry import discover
from worker.store import queries
from worker.store.migrate import migrations
from worker.web import create_app

JOBS = {"JOBS_PACKAGE": "tests.queue_jobs"}
RANGE = "(0001-01-01 to 9999-12-31)"
STATUS_PASSWORD = "Refused-Page-Pa55word"
DEEP = "[" * 5000 + "]" * 5000  # jsonb keeps it; a JSON decoder in Python recurses too deep


def unchecked(db, *rows: dict) -> list[int]:
    """Queue requests for `plain` past nightshift.check_trigger (as rows queued before migration
    0008 were), each row its columns' values: their ids, in order."""
    db.query("ALTER TABLE nightshift.triggers DISABLE TRIGGER check_trigger")
    try:
        ids = []
        for row in rows:
            row = {"job": "plain", **row}
            columns, values = ", ".join(row), ", ".join(["%s"] * len(row))
            sql = f"INSERT INTO nightshift.triggers ({columns}) VALUES ({values}) RETURNING id"
            ids.append(db.scalar(sql, tuple(row.values())))
        return ids
    finally:
        db.query("ALTER TABLE nightshift.triggers ENABLE TRIGGER check_trigger")


def queue(db, job: str = "plain", params: str = "{}") -> int:
    return db.scalar(
        "INSERT INTO nightshift.triggers (job, params) VALUES (%s, %s) RETURNING id", (job, params)
    )


def served(db, request_id: int, table: str = "plain_served") -> list[tuple]:
    """What the run that served `request_id` received (empty until it ran)."""
    if db.scalar("SELECT to_regclass(%s)", (table,)) is None:  # the worker migrates as it starts
        return []
    return db.query(
        f"SELECT s.params, s.since, s.until FROM {table} s"
        " JOIN nightshift.triggers t ON t.run_id = s.run_id WHERE t.id = %s",
        (request_id,),
    )


def refused_runs(db) -> list[tuple]:
    return db.query(
        "SELECT job, trigger, error, rows, batches FROM nightshift.runs"
        " WHERE status = 'refused' ORDER BY id"
    )


def test_requests_no_run_can_serve_are_refused_once_each_and_the_next_runs(
    workers, cli, db, webhook
):
    assert cli("migrate", **JOBS).returncode == 0
    objects = "params must be a JSON object of strings"
    hostile = [
        ({"since": "10000-01-01"}, f"since '10000-01-01' is not a date {RANGE}"),
        ({"since": "0044-03-15 BC"}, f"since '0044-03-15 BC' is not a date {RANGE}"),
        ({"until": "infinity"}, f"until 'infinity' is not a date {RANGE}"),
        ({"params": "[1]"}, f"{objects}, got a JSON array"),
        ({"params": '{"n": 1}'}, f"{objects}: 'n' is 1"),
        ({"params": '{"since": "x"}'}, "params may not be named since: use the columns"),
        ({"params": f'{{"a": {DEEP}}}'}, "params are nested too deeply to read"),
    ]
    ids = unchecked(db, *(row for row, _ in hostile))
    after = queue(db, params='{"region": "ca"}')  # queued behind them all
    _, tail = workers(ALERT_WEBHOOK_URL=webhook.url, **JOBS)

    assert wait_for(lambda: served(db, after), what="the request queued after them to run") == [
        ({"region": "ca"}, None, None)
    ]
    reasons = [f"request {i} refused: {why}" for i, (_, why) in zip(ids, hostile, strict=True)]
    assert refused_runs(db) == [("plain", "queued", reason, 0, 0) for reason in reasons]
    settled = db.query(
        "SELECT t.id, t.refused, r.error, t.claimed_by FROM nightshift.triggers t"
        " JOIN nightshift.runs r ON r.id = t.run_id WHERE t.refused IS NOT NULL ORDER BY t.id"
    )
    assert settled == [(i, why, why, "test.1") for i, why in zip(ids, reasons, strict=True)]
    # Settled once: one more request makes the worker look again, and nothing new is said.
    again = queue(db)
    wait_for(lambda: served(db, again), what="one more request to run")
    assert [line["error"] for line in tail.events("request_refused")] == reasons
    assert all(line["level"] == "error" for line in tail.events("request_refused"))
    wait_for(lambda: len(webhook.received) >= len(reasons), what="the refused alerts")
    assert sorted(alert["error"] for alert in webhook.received) == sorted(reasons)
    assert {(alert["alert"], alert["status"], alert["job"]) for alert in webhook.received} == {
        ("refused", "refused", "plain")
    }
    first = next(a for a in webhook.received if a["request_id"] == ids[0])
    run_id = db.scalar("SELECT run_id FROM nightshift.triggers WHERE id = %s", (ids[0],))
    assert first["text"] == (
        f":no_entry: Nightshift job plain: {reasons[0]} (run {run_id} on test.1);"
        " the job's next requests run"
    )
    assert db.scalar("SELECT count(*) FROM nightshift.triggers WHERE claimed_at IS NULL") == 0

    shown = cli("runs", "plain", "--limit", "20", **JOBS)
    assert shown.returncode == 0
    for reason in reasons:
        assert reason[:60] in shown.stdout
    as_json = json.loads(cli("runs", "--json", "--limit", "20", **JOBS).stdout)
    assert [run["error"] for run in as_json if run["status"] == "refused"] == reasons[::-1]


def test_the_insert_refuses_a_window_no_run_can_take_naming_the_value_and_the_range(cli, db):
    assert cli("migrate", **JOBS).returncode == 0
    insert = "INSERT INTO nightshift.triggers (job, since, until) VALUES ('plain', %s, %s)"
    refused = {
        ("10000-01-01", None): f"since '10000-01-01' is not a date {RANGE}",
        ("0001-12-31 BC", None): f"since '0001-12-31 BC' is not a date {RANGE}",
        ("-infinity", None): f"since '-infinity' is not a date {RANGE}",
        ("5874897-12-31", None): f"since '5874897-12-31' is not a date {RANGE}",
        (None, "infinity"): f"until 'infinity' is not a date {RANGE}",
        ("2024-02-01", "2024-01-31"): "since '2024-02-01' is after until '2024-01-31'",
    }
    conn = psycopg2.connect(db.url)  # the app role, as a web app queues a run
    conn.autocommit = True
    try:
        for (since, until), message in refused.items():
            with pytest.raises(psycopg2.errors.CheckViolation) as raised, conn.cursor() as cur:
                cur.execute(insert, (since, until))
            assert raised.value.diag.message_primary == message
        with conn.cursor() as cur:  # the edges of the range are dates a run can take
            cur.execute(insert, ("0001-01-01", "9999-12-31"))
    finally:
        conn.close()
    assert db.query("SELECT since::text, until::text FROM nightshift.triggers") == [
        ("0001-01-01", "9999-12-31")
    ]


def test_the_insert_refuses_params_naming_the_parameter_never_its_value(cli, db):
    assert cli("migrate", **JOBS).returncode == 0
    insert = "INSERT INTO nightshift.triggers (job, params) VALUES ('plain', %s)"
    refused = {
        '{"api_key": 73310991337, "region": "ca"}': "'api_key' is a JSON number",
        '{"token": ["Sup3r-S3cret-T0ken"]}': "'token' is a JSON array",
        '["Sup3r-S3cret-T0ken"]': "got a JSON array",
        '"Sup3r-S3cret-T0ken"': "got a JSON string",
    }
    conn = psycopg2.connect(db.url)
    conn.autocommit = True
    try:
        for params, says in refused.items():
            with pytest.raises(psycopg2.errors.CheckViolation) as raised, conn.cursor() as cur:
                cur.execute(insert, (params,))
            message = raised.value.diag.message_primary
            assert message == f"params must be a JSON object of strings: {says}"
            assert "73310991337" not in str(raised.value) and "S3cret" not in str(raised.value)
    finally:
        conn.close()
    assert db.scalar("SELECT count(*) FROM nightshift.triggers") == 0


def test_requests_queued_before_the_migration_are_settled_by_the_worker_at_start(workers, db):
    """The schema as migrations 0001-0007 left it, whose INSERT took a year-10000 date."""
    with psycopg2.connect(db.url) as conn, conn.cursor() as cur:  # as `migrate` would have
        cur.execute(_before_0008())
    db.query("INSERT INTO nightshift.jobs (name) VALUES ('plain')")
    bad = db.scalar(
        "INSERT INTO nightshift.triggers (job, since) VALUES ('plain', '10000-01-01') RETURNING id"
    )
    after = queue(db)
    _, tail = workers(**JOBS)  # it migrates (0008 on), then settles the old request

    wait_for(lambda: served(db, after), what="the request behind the old one to run")
    [line] = tail.events("request_refused")
    assert line["error"] == f"request {bad} refused: since '10000-01-01' is not a date {RANGE}"
    assert refused_runs(db) == [("plain", "queued", line["error"], 0, 0)]


def _before_0008() -> str:
    """Migrations 0001-0007 as they ship, recorded as `migrate` records them."""
    statements = [
        "CREATE SCHEMA nightshift;",
        "CREATE TABLE nightshift.schema_migrations (version integer PRIMARY KEY,"
        " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());",
    ]
    for version, name, path in migrations():
        if version < 8:
            statements.append(path.read_text())
            statements.append(
                f"INSERT INTO nightshift.schema_migrations VALUES ({version}, '{name}');"
            )
    return "\n".join(statements)


def test_runs_cut_short_whose_params_no_run_can_take_are_refused_once_not_retried(
    workers, cli, db, webhook
):
    assert cli("migrate", **JOBS).returncode == 0
    record = (
        "INSERT INTO nightshift.runs (job, trigger, status, params) VALUES (%s, 'queued', %s, %s)"
        " RETURNING id"
    )
    cut_short = db.scalar(record, ("plain", "interrupted", '{"since": "10000-01-01"}'))
    # A run whose process died (still `running`, its lock free), its params unreadable: the
    # sweep marks it abandoned, then it is refused like the other.
    dead = db.scalar(record, ("flaky", "running", f'{{"a": {DEEP}}}'))
    _, tail = workers(ALERT_WEBHOOK_URL=webhook.url, **JOBS)

    after = queue(db)
    wait_for(lambda: served(db, after), what="the worker to serve a request after starting")
    reasons = {
        cut_short: f"resume of run {cut_short} refused: since '10000-01-01' is not a date {RANGE}",
        dead: f"resume of run {dead} refused: params are nested too deeply to read",
    }
    assert {line["resumes"]: line["error"] for line in tail.events("request_refused")} == reasons
    rows = db.query(
        "SELECT c.id, c.status, r.status, r.trigger, r.error, r.resumes FROM nightshift.runs c"
        " JOIN nightshift.runs r ON r.id = c.resumed_by WHERE c.id IN (%s, %s)",
        (cut_short, dead),
    )
    assert sorted(rows) == [
        (cut_short, "interrupted", "refused", "resume", reasons[cut_short], cut_short),
        (dead, "abandoned", "refused", "resume", reasons[dead], dead),
    ]
    # Settled: the query housekeeping asks every 30 s offers them no more.
    with psycopg2.connect(db.url) as conn, conn.cursor() as cur:
        assert queries.runs_to_resume(cur) == []
    wait_for(lambda: len(webhook.received) == 2, what="the two refused alerts")
    assert sorted(alert["error"] for alert in webhook.received) == sorted(reasons.values())
    assert tail.events("job_resuming") == []


def test_catch_up_passes_over_starts_no_run_can_have_had_and_refused_runs(workers, cli, db):
    """A start of infinity, of year 10000 or BC cannot be read by the driver, and one in the
    future would hide every missed fire time: passed over, as refused runs are."""
    assert cli("migrate", **JOBS).returncode == 0
    db.query(
        "INSERT INTO nightshift.runs (job, trigger, status, started_at) VALUES"
        " ('plain', 'schedule', 'succeeded', now() - interval '2 days'),"
        " ('plain', 'manual', 'succeeded', 'infinity'),"
        " ('plain', 'manual', 'succeeded', '10000-01-01 00:00 UTC'),"
        " ('plain', 'manual', 'succeeded', '0044-03-15 00:00 UTC BC'),"
        " ('plain', 'queued', 'refused', now())"
    )
    _, tail = workers(PLAIN_SCHEDULE="0 3 * * *", **JOBS)

    caught_up = tail.wait_event("job_catching_up")
    assert caught_up["job"] == "plain"
    wait_for(
        lambda: (
            db.query("SELECT status FROM nightshift.runs WHERE trigger = 'catchup'")
            == [("succeeded",)]
        ),
        what="the catch-up run",
    )


def test_a_request_for_a_job_no_deployed_code_declares_is_refused_and_another_releases_waits(
    workers, cli, db
):
    assert cli("migrate", **JOBS).returncode == 0
    db.query("INSERT INTO nightshift.jobs (name) VALUES ('gone'), ('newer')")
    gone = queue(db, "gone")
    _, tail = workers(**JOBS)  # its migrate retires 'gone' and 'newer': no code here has them
    after = queue(db)
    wait_for(lambda: served(db, after), what="a plain request to run")
    [line] = tail.events("request_refused")
    assert line["error"] == f"request {gone} refused: no deployed code declares job 'gone'"

    # A job another release declares (as during a deploy): not this worker's to refuse.
    db.query("UPDATE nightshift.jobs SET retired = false WHERE name = 'newer'")
    newer = queue(db, "newer")
    tail.wait_event("trigger_for_unknown_job")
    for _ in range(2):  # two more looks: said once
        later = queue(db)
        wait_for(lambda later=later: served(db, later), what="a plain request to run")
    assert [(w["job"], w["request_id"]) for w in tail.events("trigger_for_unknown_job")] == [
        ("newer", newer)
    ]
    assert db.query(
        "SELECT claimed_at, refused FROM nightshift.triggers WHERE id = %s", (newer,)
    ) == [(None, None)]
    assert len(tail.events("request_refused")) == 1


def test_a_credential_parameter_is_cleared_from_the_queue_once_claimed_the_run_gets_it(
    workers, cli, db
):
    assert cli("migrate", **JOBS).returncode == 0
    secret = "qk-7e1d-CLEAR-ME-ONCE-CLAIMED"
    request = queue(db, params=json.dumps({"api_key": secret, "region": "ca"}))
    [refused] = unchecked(db, {"since": "10000-01-01", "params": json.dumps({"password": secret})})
    workers(**JOBS)

    assert wait_for(lambda: served(db, request), what="the request to run") == [
        ({"api_key": secret, "region": "ca"}, None, None)
    ]
    wait_for(lambda: refused_runs(db), what="the hostile request to be refused")
    assert db.query("SELECT id, params FROM nightshift.triggers ORDER BY id") == [
        (request, {"api_key": "***", "region": "ca"}),
        (refused, {"password": "***"}),
    ]


def test_the_status_page_shows_a_refused_request_with_its_reason(workers, cli, db):
    assert cli("migrate", **JOBS).returncode == 0
    [bad] = unchecked(db, {"until": "10000-01-01"})
    workers(**JOBS)
    reason = f"request {bad} refused: until '10000-01-01' is not a date {RANGE}"
    wait_for(lambda: refused_runs(db), what="the request to be refused")
    settings = Settings.from_env({"DATABASE_URL": db.url, "STATUS_PASSWORD": STATUS_PASSWORD})
    page = create_app(settings, jobs=discover("tests.queue_jobs")).test_client()
    auth = base64.b64encode(f"nightshift:{STATUS_PASSWORD}".encode()).decode()

    answer = page.get("/runs?status=refused", headers={"Authorization": f"Basic {auth}"})

    assert answer.status_code == 200
    html = answer.get_data(as_text=True)
    assert '<option value="refused" selected>refused</option>' in html
    assert '<span class="status status-refused">refused</span>' in html
    assert reason.replace("'", "&#39;") in html
