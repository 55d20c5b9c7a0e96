"""A run killed with SIGKILL between batches leaves only whole batches; the rerun completes it."""

from __future__ import annotations

import datetime as dt
import signal

from tests.support import synthetic_feed


def kill_at_gate(cli, gate) -> None:
    """Start `run earthquakes` and SIGKILL it while a batch waits at the gate (the batch is at
    the server, the next one is being read)."""
    gate.kill_while_waiting(cli.spawn("run", "earthquakes", BATCH_SIZE="500"))


def test_a_run_killed_between_batches_is_completed_by_the_rerun_exactly(cli, db, feed, gate):
    document = synthetic_feed(3000)
    feed.serve(document)
    assert cli("migrate").returncode == 0
    gate.install(after=1000)  # batches 1 and 2 commit, batch 3 waits at the gate

    kill_at_gate(cli, gate)

    # Only whole batches, and the state says exactly how far they reached. A batch is one
    # statement, its own transaction: the one the server held when its client died commits
    # whole, with the progress and the cursor it reaches.
    assert db.scalar("SELECT count(*) FROM earthquakes") == 1500
    [dead] = db.runs()
    assert (dead["status"], dead["rows"], dead["batches"]) == ("running", 1500, 3)
    # A batch records the changed rows of the batches before it; the finish records the last.
    assert dead["changed"] == 1000
    last = document["features"][1499]["properties"]["updated"]
    cursor = dt.datetime.fromisoformat(db.cursor("earthquakes", feed.url))
    assert cursor == dt.datetime.fromtimestamp(last / 1000, tz=dt.UTC)

    # --wait: the killed process's session may hold the job's lock until the server notices.
    result = cli("run", "earthquakes", "--wait", BATCH_SIZE="500")

    assert result.returncode == 0, result.stderr
    expected = sorted(f["id"] for f in document["features"])
    assert [r[0] for r in db.query("SELECT id FROM earthquakes ORDER BY id")] == expected
    expected_mags = {f["id"]: f["properties"]["mag"] for f in document["features"]}
    assert dict(db.query("SELECT id, mag FROM earthquakes")) == expected_mags
    dead, rerun = db.runs()
    assert dead["status"] == "abandoned"
    assert dead["error"] == f"the process running it died (found by run {rerun['id']})"
    assert (rerun["status"], rerun["rows"]) == ("succeeded", 1501)  # the tie row, then 1500 more
    assert rerun["changed"] == 1500  # the tie row is unchanged; the finish records the count
    [started] = result.events("job_started")
    assert started["abandoned_runs"] == [dead["id"]]


def test_a_starting_worker_marks_a_dead_run_abandoned_before_running_anything(
    workers, cli, db, feed, gate
):
    document = synthetic_feed(1000)
    feed.serve(document)
    assert cli("migrate").returncode == 0
    gate.install(after=500)
    kill_at_gate(cli, gate)
    assert [r["status"] for r in db.runs()] == ["running"]

    worker, tail = workers(EARTHQUAKES_SCHEDULE="off", DYNO="worker.7")
    swept = tail.wait_event("dead_runs_abandoned")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=25) == 0

    [dead] = db.runs()
    assert swept["runs"] == [dead["id"]]
    assert dead["status"] == "abandoned"
    assert dead["error"] == "the process running it died (found by a worker starting on worker.7)"

    rerun = cli("run", "earthquakes", BATCH_SIZE="500")
    assert rerun.returncode == 0, rerun.stderr
    ids = [r[0] for r in db.query("SELECT id FROM earthquakes ORDER BY id")]
    assert ids == sorted(f["id"] for f in document["features"])
