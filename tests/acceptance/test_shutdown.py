"""SIGTERM: the worker (and `run`) stop cleanly, well inside Heroku's 30 s, recording the run."""

from __future__ import annotations

import signal
import subprocess

from tests.support import LogTail, synthetic_feed, wait_for

HEROKU_BUDGET = 25  # seconds: Heroku sends SIGKILL 30 s after SIGTERM


def test_sigterm_to_an_idle_worker_exits_0(workers, db):
    process, tail = workers()
    scheduled = tail.wait_event("job_scheduled")
    assert scheduled["job"] == "earthquakes"
    assert scheduled["next_run_at"]

    process.send_signal(signal.SIGTERM)

    assert process.wait(timeout=HEROKU_BUDGET) == 0
    assert tail.events("worker_stopped")
    assert db.runs() == []


def worker_mid_run(workers, cli, feed, gate) -> tuple[dict, subprocess.Popen, LogTail]:
    """A worker whose scheduled run has committed 1000 rows and waits at the gate."""
    document = synthetic_feed(3000)
    feed.serve(document)
    assert cli("migrate").returncode == 0
    gate.install(after=1000)
    process, tail = workers(EARTHQUAKES_SCHEDULE="* * * * * *", BATCH_SIZE="500")
    wait_for(gate.waiting, what="a batch waiting at the gate")
    return document, process, tail


def test_sigterm_mid_run_lets_the_batch_commit_and_records_the_run_interrupted(
    workers, cli, db, feed, gate
):
    document, process, tail = worker_mid_run(workers, cli, feed, gate)

    process.send_signal(signal.SIGTERM)
    tail.wait_event("shutdown_requested")
    gate.open()  # the batch in flight may now commit

    assert process.wait(timeout=HEROKU_BUDGET) == 0
    [run] = db.runs()
    assert (run["status"], run["batches"], run["rows"]) == ("interrupted", 3, 1500)
    assert db.scalar("SELECT count(*) FROM earthquakes") == 1500
    [finished] = tail.events("job_finished")
    assert (finished["status"], finished["run_id"]) == ("interrupted", run["id"])

    rerun = cli("run", "earthquakes", BATCH_SIZE="500")

    assert rerun.returncode == 0, rerun.stderr
    ids = [r[0] for r in db.query("SELECT id FROM earthquakes ORDER BY id")]
    assert ids == sorted(f["id"] for f in document["features"])


def test_a_run_stuck_past_the_grace_period_is_recorded_interrupted_and_the_worker_exits_0(
    workers, db, feed
):
    feed.hold()  # the job's HTTP request never gets an answer
    process, tail = workers(EARTHQUAKES_SCHEDULE="* * * * * *", SHUTDOWN_GRACE_SECONDS="2")
    tail.wait_event("job_started")
    assert feed.requested.wait(30)

    process.send_signal(signal.SIGTERM)

    assert process.wait(timeout=HEROKU_BUDGET) == 0
    [run] = db.runs()
    assert run["status"] == "interrupted"
    assert run["error"] == "shutdown: grace period ran out"


def test_sigterm_to_a_foreground_run_waiting_on_its_source_interrupts_it_at_once(cli, db, feed):
    feed.hold()
    process = cli.spawn("run", "earthquakes")
    tail = LogTail(process.stdout)
    assert feed.requested.wait(30)

    process.send_signal(signal.SIGTERM)

    assert process.wait(timeout=HEROKU_BUDGET) == 1
    [run] = db.runs()
    assert run["status"] == "interrupted"
    assert tail.wait_event("job_finished")["status"] == "interrupted"
    assert "interrupted" in process.stderr.read()


def test_a_second_sigterm_exits_at_once_and_the_next_run_resumes(workers, cli, db, feed, gate):
    document, process, tail = worker_mid_run(workers, cli, feed, gate)

    process.send_signal(signal.SIGTERM)
    tail.wait_event("shutdown_requested")
    process.send_signal(signal.SIGTERM)  # cold: do not wait for the batch

    assert process.wait(timeout=HEROKU_BUDGET) == 1
    assert tail.wait_event("cold_shutdown")["signal"] == "SIGTERM"
    [session] = gate.waiting()
    gate.open()
    # The batch the server held is one statement: it commits whole, with its state, though
    # its process is gone (or, had the server noticed first, not at all). Never in part.
    wait_for(
        lambda: not db.query("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (session,)),
        what="the dead process's session to end",
    )
    assert db.scalar("SELECT count(*) FROM earthquakes") == 1500
    assert db.runs()[0]["batches"] == 3  # the run's progress went in with the rows

    # --wait: the dead process's session may hold the job's lock until the server notices.
    rerun = cli("run", "earthquakes", "--wait", BATCH_SIZE="500")

    assert rerun.returncode == 0, rerun.stderr
    ids = [r[0] for r in db.query("SELECT id FROM earthquakes ORDER BY id")]
    assert ids == sorted(f["id"] for f in document["features"])
    assert [r["status"] for r in db.runs()] == ["abandoned", "succeeded"]
