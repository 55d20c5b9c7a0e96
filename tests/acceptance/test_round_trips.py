"""A batch is one statement and one round trip: its rows, the run's progress and the job's
state, with no BEGIN or COMMIT around it; opening and finishing a run take few round trips
more. Read from the server's own statement log."""

from __future__ import annotations

from tests.support import synthetic_feed

PREFIX = "nightshift:earthquakes@"


def statements(own) -> list[str]:
    """The statements the run's session sent, in order (the first line of each)."""
    text = own.cluster.log.read_text(errors="replace")
    return [
        line.split("statement: ", 1)[1]
        for line in text.splitlines()
        if line.startswith(PREFIX) and "statement: " in line
    ]


def test_each_batch_is_one_statement_and_the_run_few_more(cli, own, feed):
    for setting in ("log_statement = 'all'", "log_line_prefix = '%a|'"):
        own.cluster.psql(f"ALTER SYSTEM SET {setting}")
    own.cluster.psql("SELECT pg_reload_conf()")
    feed.serve(synthetic_feed(2500))
    assert cli("migrate", DATABASE_URL=own.url).returncode == 0

    result = cli("run", "earthquakes", BATCH_SIZE="1000", DATABASE_URL=own.url)

    assert result.returncode == 0, result.stderr
    [finished] = result.events("job_finished")
    assert (finished["rows"], finished["batches"]) == (2500, 3)
    sent = statements(own)
    batches = [i for i, s in enumerate(sent) if s.startswith("-- A whole batch as ONE statement")]
    assert len(batches) == 3
    # Back to back: nothing between them, and the transaction opening the run ended before.
    assert batches == list(range(batches[0], batches[0] + 3))
    assert sent[batches[0] - 1] == "COMMIT"
    # The opening, on a migrated database: the session's facts, then one transaction of
    # reads that find nothing to migrate, the job's row, its lock, the run, its state.
    opening = sent[: batches[0]]
    assert (opening.count("BEGIN"), opening.count("COMMIT")) == (1, 1)
    assert len(opening) <= 13, opening
    # The finish: what the database holds, the run's outcome, the lock; no BEGIN or COMMIT.
    finish = sent[batches[-1] + 1 :]
    assert len(finish) == 3 and not {"BEGIN", "COMMIT"} & set(finish), finish
    assert finish[-1].startswith("SELECT pg_advisory_unlock")
    assert own.scalar("SELECT count(*) FROM earthquakes") == 2500
    assert own.scalar("SELECT rows FROM nightshift.runs") == 2500


def test_a_runs_batches_grow_from_a_thousand_rows_to_batch_size(cli, db, feed):
    """The server starts on the first thousand rows; later batches double up to BATCH_SIZE."""
    feed.serve(synthetic_feed(12_000))

    result = cli("run", "earthquakes", BATCH_SIZE="3000", LOG_LEVEL="DEBUG")

    assert result.returncode == 0, result.stderr
    sizes = [event["rows"] for event in result.events("batch_committed")]
    assert sizes == [1000, 2000, 3000, 3000, 3000]
    assert db.scalar("SELECT count(*) FROM earthquakes") == 12_000
    assert db.runs()[-1]["batches"] == 5
