"""Scheduling with several real workers: one run per fire time, catch-up, queued triggers,
`run --wait`, failure alerts. Time is driven through schedules and history, never slept."""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
from collections import Counter
from itertools import pairwise

import psycopg2
import pytest

from tests.support import LogTail, synthetic_feed, wait_for


def scheduled_runs(db) -> list[tuple[dt.datetime, str, str]]:
    return db.query(
        "SELECT scheduled_for, status, dyno FROM nightshift.runs"
        " WHERE trigger = 'schedule' ORDER BY scheduled_for"
    )


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("schedule", "every"),
    [
        ("* * * * *", 60),  # a plain crontab, as deployed: three fire times take ~2.5 minutes
        ("*/3 * * * * *", 3),  # the same with seconds: quick, and a tighter race
    ],
    ids=["every-minute", "every-3-seconds"],
)
def test_two_workers_run_each_fire_time_exactly_once(workers, cli, db, schedule, every):
    assert cli("migrate").returncode == 0
    env = {"EARTHQUAKES_SCHEDULE": schedule}
    (_, tail_a), (_, tail_b) = workers(DYNO="worker.1", **env), workers(DYNO="worker.2", **env)

    runs = wait_for(
        lambda: len(scheduled_runs(db)) >= 3 and scheduled_runs(db), timeout=every * 4 + 30
    )

    fire_times = [fire for fire, _, _ in runs]
    assert all(count == 1 for count in Counter(fire_times).values())  # never doubled
    gaps = {(later - earlier).total_seconds() for earlier, later in pairwise(fire_times)}
    assert gaps == {every}  # never skipped
    assert {status for _, status, _ in runs[:-1]} == {"succeeded"}
    skipped = tail_a.events("job_skipped") + tail_b.events("job_skipped")
    assert skipped, "the losing worker says why it did not run"
    assert {line["reason"].split(" ")[0] for line in skipped} <= {"run", "job"}
    assert db.scalar("SELECT count(*) FROM nightshift.runs WHERE status = 'failed'") == 0


def latest_3am(now: dt.datetime) -> dt.datetime:
    today = now.replace(hour=3, minute=0, second=0, microsecond=0)
    return today if today <= now else today - dt.timedelta(days=1)


def test_missed_fire_times_during_a_restart_are_caught_up_with_one_run(workers, cli, db):
    assert cli("migrate").returncode == 0
    db.query(
        "INSERT INTO nightshift.runs (job, trigger, status, started_at, finished_at)"
        " VALUES ('earthquakes', 'schedule', 'succeeded', now() - interval '3 days',"
        " now() - interval '3 days')"
    )

    _, tail = workers(EARTHQUAKES_SCHEDULE="0 3 * * *")
    caught = tail.wait_event("job_catching_up")
    finished = tail.wait_event("job_finished")

    missed = latest_3am(dt.datetime.now(dt.UTC))
    assert dt.datetime.fromisoformat(caught["missed_fire_time"]) == missed
    assert finished["status"] == "succeeded"
    [run] = db.query(
        "SELECT trigger, scheduled_for, status FROM nightshift.runs WHERE id = %s",
        (finished["run_id"],),
    )
    assert run == ("catchup", missed, "succeeded")
    assert db.scalar("SELECT count(*) FROM nightshift.runs") == 2  # three missed nights: one run

    _, tail_again = workers(EARTHQUAKES_SCHEDULE="0 3 * * *")
    tail_again.wait_event("job_scheduled")
    assert tail_again.events("job_catching_up") == []  # the last run is after the fire time
    assert db.scalar("SELECT count(*) FROM nightshift.runs") == 2


def test_a_trigger_from_the_cli_or_sql_runs_once_on_one_of_two_workers(workers, cli, db):
    env = {"EARTHQUAKES_SCHEDULE": "off"}
    _, tail_a = workers(DYNO="worker.1", **env)
    _, tail_b = workers(DYNO="worker.2", **env)
    tail_a.wait_event("trigger_listener_started")
    tail_b.wait_event("trigger_listener_started")

    queued = cli("trigger", "earthquakes", "--param", "region=ca", "--full-refresh")
    assert queued.returncode == 0, queued.stderr
    assert queued.stdout.startswith("queued request 1 to run earthquakes")
    db.query(
        "INSERT INTO nightshift.triggers (job, since, until) VALUES ('earthquakes',"
        " '2016-11-03', '2016-11-03')"
    )

    def done() -> list[tuple]:
        rows = db.query(
            "SELECT t.id, t.claimed_at - t.requested_at, t.claimed_by, r.trigger, r.status,"
            " r.params, r.rows FROM nightshift.triggers t JOIN nightshift.runs r ON r.id = t.run_id"
            " WHERE r.status <> 'running' ORDER BY t.id"
        )
        return rows if len(rows) == 2 else []

    first, second = wait_for(done, timeout=30, what="both requests to run")
    for _, latency, claimed_by, trigger, status, _, _ in (first, second):
        assert latency < dt.timedelta(seconds=2)  # LISTEN/NOTIFY, not the 5 s poll
        assert claimed_by in ("worker.1", "worker.2")
        assert (trigger, status) == ("queued", "succeeded")
    assert first[5] == {"region": "ca", "full_refresh": True}
    assert first[6] == 151
    assert second[5] == {"since": "2016-11-03", "until": "2016-11-03"}
    assert db.scalar("SELECT count(*) FROM nightshift.runs") == 2  # each request ran once


def test_triggers_for_unknown_jobs_or_with_malformed_parameters_are_refused(cli, db):
    unknown = cli("trigger", "nosuchjob")
    assert unknown.returncode == 2
    assert (
        unknown.stderr.strip()
        == "error: unknown job 'nosuchjob'; known jobs: earthquakes, earthquakes_history"
    )

    malformed = cli("trigger", "earthquakes", "--param", "=x")
    assert malformed.returncode == 1
    assert malformed.stderr.strip() == "error: --param takes KEY=VALUE, got '=x'"

    backwards = cli("trigger", "earthquakes", "--since", "2024-02-01", "--until", "2024-01-01")
    assert backwards.returncode == 1
    assert backwards.stderr.strip() == "error: --since 2024-02-01 is after --until 2024-01-01"

    assert cli("migrate").returncode == 0
    with pytest.raises(psycopg2.errors.ForeignKeyViolation) as refused:
        db.query("INSERT INTO nightshift.triggers (job) VALUES ('nosuchjob')")
    assert "unknown job 'nosuchjob'; known jobs: earthquakes, earthquakes_history" in str(
        refused.value
    )
    with pytest.raises(psycopg2.errors.CheckViolation):
        db.query("INSERT INTO nightshift.triggers (job, params) VALUES ('earthquakes', '[1]')")
    with pytest.raises(psycopg2.errors.CheckViolation):  # a name the run history keeps apart
        db.query(
            "INSERT INTO nightshift.triggers (job, params)"
            """ VALUES ('earthquakes', '{"since": "x"}')"""
        )
    reserved = cli("trigger", "earthquakes", "--param", "since=x")
    assert reserved.returncode == 1
    assert reserved.stderr.strip() == "error: --param since is reserved; use --since"
    assert db.scalar("SELECT count(*) FROM nightshift.triggers") == 0


def test_run_while_the_job_runs_elsewhere_exits_3_and_with_wait_runs_after(cli, db, feed, gate):
    feed.serve(synthetic_feed(1000))
    assert cli("migrate").returncode == 0
    gate.install(after=500)
    holder = cli.spawn("run", "earthquakes", BATCH_SIZE="500")
    try:
        wait_for(gate.waiting, what="the first run to hold the job")
        jobs = cli("jobs")
        assert " run 1 on test.1 " in jobs.stdout

        busy = cli("run", "earthquakes")
        assert busy.returncode == 3
        assert busy.stderr.strip() == (
            "error: job 'earthquakes' is already running elsewhere;"
            " try again when it is done, or use --wait"
        )

        waiter = cli.spawn("run", "earthquakes", "--wait")
        tail = LogTail(waiter.stdout)
        tail.wait_event("job_waiting")
        gate.open()
        assert holder.wait(timeout=30) == 0
        assert waiter.wait(timeout=30) == 0
    finally:
        holder.kill()
    first, waited = db.query(
        "SELECT status, started_at, finished_at FROM nightshift.runs ORDER BY id"
    )
    assert (first[0], waited[0]) == ("succeeded", "succeeded")
    assert waited[1] >= first[2]  # the waiting run started after the first had finished
    assert db.scalar("SELECT count(*) FROM earthquakes") == 1000


def test_a_failed_run_posts_one_alert_to_the_webhook(cli, db, feed, webhook):
    feed.fail(500)

    result = cli("run", "earthquakes", ALERT_WEBHOOK_URL=webhook.url)

    assert result.returncode == 1
    [alert] = webhook.received
    run_id = db.runs()[-1]["id"]
    assert alert["job"] == "earthquakes"
    assert alert["run_id"] == run_id
    assert alert["error"].startswith("source: GET http://127.0.0.1:")
    assert alert["error"].endswith("answered 500 Internal Server Error")
    assert alert["text"].startswith(
        f":rotating_light: Nightshift job earthquakes failed (run {run_id}"
    )
    assert "s3cr3tPath" not in result.stdout + result.stderr  # the webhook URL is a secret
    assert len(result.events("alert_sent")) == 1


def test_no_alert_for_a_run_that_succeeds(cli, webhook):
    result = cli("run", "earthquakes", ALERT_WEBHOOK_URL=webhook.url)

    assert result.returncode == 0
    assert webhook.received == []


def test_a_webhook_answering_500_is_logged_and_never_fails_the_job_further(cli, db, feed, webhook):
    webhook.status = 500
    feed.fail(503)

    result = cli(
        "run",
        "earthquakes",
        ALERT_WEBHOOK_URL=webhook.url,
        HTTP_RETRIES="0",
        ALERT_RETRY_DELAY="0.05",
    )

    assert result.returncode == 1  # the run's own failure, nothing more
    assert len(webhook.received) == 4  # ALERT_ATTEMPTS, then it gives up
    failed = result.events("alert_failed")
    assert [f["reason"] for f in failed] == ["answered 500"] * 4
    assert failed[-1]["gave_up"] == "4 attempt(s) made"
    assert all(f["host"].startswith("127.0.0.1:") for f in failed)
    assert db.runs()[-1]["error"].endswith("answered 503 Service Unavailable")
    assert "Traceback" not in result.stdout + result.stderr


def test_a_request_whose_notify_was_lost_is_picked_up_by_polling(workers, cli, db):
    assert cli("migrate").returncode == 0
    _, tail = workers(EARTHQUAKES_SCHEDULE="off")
    tail.wait_event("trigger_listener_started")
    db.query("ALTER TABLE nightshift.triggers DISABLE TRIGGER notify_trigger")  # no NOTIFY

    db.query("INSERT INTO nightshift.triggers (job) VALUES ('earthquakes')")

    finished = tail.wait_event("job_finished", timeout=30)
    assert (finished["status"], finished["rows"]) == ("succeeded", 151)
    assert db.scalar("SELECT run_id FROM nightshift.triggers") == finished["run_id"]


# -- the next start resumes what a shutdown or a crash cut short ---------------------------------
def start_catchup_at_gate(workers, cli, db, feed, gate) -> tuple[dict, subprocess.Popen, LogTail]:
    """A worker whose catch-up run (a scheduled run) has 1000 rows in and waits at the gate."""
    document = synthetic_feed(3000)
    feed.serve(document)
    assert cli("migrate").returncode == 0
    db.query(
        "INSERT INTO nightshift.runs (job, trigger, status, started_at, finished_at)"
        " VALUES ('earthquakes', 'schedule', 'succeeded', now() - interval '3 days',"
        " now() - interval '3 days')"
    )
    gate.install(after=1000)
    process, tail = workers(EARTHQUAKES_SCHEDULE="0 3 * * *", BATCH_SIZE="500", DYNO="old.1")
    wait_for(gate.waiting, what="the catch-up run to wait at the gate")
    return document, process, tail


def assert_resumed_once(db, document: dict, cut_short: str) -> None:
    runs = db.query(
        "SELECT id, trigger, status, resumes, resumed_by FROM nightshift.runs ORDER BY id"
    )
    _history, first, resumed = runs  # one resume, though two workers started
    assert (first[1], first[2], first[4]) == ("catchup", cut_short, resumed[0])
    assert (resumed[1], resumed[2], resumed[3]) == ("resume", "succeeded", first[0])
    ids = [r[0] for r in db.query("SELECT id FROM earthquakes ORDER BY id")]
    assert ids == sorted(f["id"] for f in document["features"])


def test_the_next_start_resumes_a_run_that_a_shutdown_interrupted(workers, cli, db, feed, gate):
    document, old, old_tail = start_catchup_at_gate(workers, cli, db, feed, gate)
    old.send_signal(signal.SIGTERM)
    old_tail.wait_event("shutdown_requested")
    gate.open()
    assert old.wait(timeout=25) == 0

    (_, a), (_, b) = (
        workers(EARTHQUAKES_SCHEDULE="0 3 * * *"),
        workers(EARTHQUAKES_SCHEDULE="0 3 * * *"),
    )
    wait_for(
        lambda: db.scalar(
            "SELECT count(*) FROM nightshift.runs WHERE trigger = 'resume' AND status = 'succeeded'"
        ),
        what="the resumed run",
    )

    assert_resumed_once(db, document, cut_short="interrupted")
    assert a.events("job_catching_up") == b.events("job_catching_up") == []


def test_the_next_start_resumes_a_run_whose_process_was_killed(workers, cli, db, feed, gate):
    document, old, _ = start_catchup_at_gate(workers, cli, db, feed, gate)
    old.send_signal(signal.SIGKILL)
    old.wait(timeout=10)
    gate.open()
    # The dead process's session lives until the server notices; then its lock is free.
    wait_for(
        lambda: (
            not db.query(
                "SELECT 1 FROM pg_stat_activity"
                " WHERE application_name = 'nightshift:earthquakes@old.1'"
            )
        ),
        what="the dead session to end",
    )

    workers(EARTHQUAKES_SCHEDULE="0 3 * * *")
    workers(EARTHQUAKES_SCHEDULE="0 3 * * *")
    wait_for(
        lambda: db.scalar(
            "SELECT count(*) FROM nightshift.runs WHERE trigger = 'resume' AND status = 'succeeded'"
        ),
        what="the resumed run",
    )

    assert_resumed_once(db, document, cut_short="abandoned")


def test_a_manual_run_someone_interrupted_is_not_resumed(workers, cli, db, feed):
    feed.hold()
    process = cli.spawn("run", "earthquakes")
    assert feed.requested.wait(30)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=25) == 1
    feed.release()

    _, tail = workers(EARTHQUAKES_SCHEDULE="off")
    tail.wait_event("trigger_listener_started")

    assert tail.events("job_resuming") == []
    assert [r["status"] for r in db.runs()] == ["interrupted"]
