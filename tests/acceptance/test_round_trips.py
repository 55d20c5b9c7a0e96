"""A batch is one statement and one round trip: its rows, the run's progress and the job's
state, with no BEGIN or COMMIT around it. Read from the server's own statement log."""

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


def test_each_batch_is_one_statement_without_begin_or_commit(cli, own, feed):
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
    assert sent[batches[-1] + 1] == "BEGIN"  # the finish: its own transaction
    assert own.scalar("SELECT count(*) FROM earthquakes") == 2500
    assert own.scalar("SELECT rows FROM nightshift.runs") == 2500
