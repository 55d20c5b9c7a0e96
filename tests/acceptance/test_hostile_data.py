"""Nothing a job or its data does can crash a run: every hostile value ends in a quarantined
row or one clean failure — never a traceback, a run left `running` or a job stuck in the
worker — and the next run works. Through the real CLI and the long-running worker."""

from __future__ import annotations

import json

import pytest

from tests.support import wait_for

GOOD = {"id": "good", "at": "2024-01-01T00:00:00Z", "n": 1, "label": "fine", "day": "2024-01-01"}
HOSTILE = {"JOBS_PACKAGE": "tests.hostile_jobs"}

# (case, rows, expected): ("rejected", n) — the run succeeds, GOOD loads, n rows are refused;
# ("failed", text) — the run fails with one line containing text.
CASES = [
    ("nul-in-text", [{"id": "a", "label": "a\u0000b"}], ("rejected", 1)),
    ("nul-in-jsonb", [{"id": "a", "payload": {"k": "a\u0000b"}}], ("rejected", 1)),
    ("dict-in-key", [{"id": {"x": 1}}], ("rejected", 1)),
    ("list-in-key", [{"id": [1, 2]}], ("rejected", 1)),
    ("no-key", [{"label": "keyless"}], ("rejected", 1)),
    ("undeclared-column", [{"id": "a", "colour": "red"}], ("rejected", 1)),
    ("not-a-dict-in-a-page", [["just a string"]], ("rejected", 1)),
    (
        "naive-and-aware-cursors",
        [
            {"id": "a", "at": {"$dt": "2024-01-02T00:00:00"}},
            {"id": "b", "at": {"$dt": "2024-01-03T00:00:00+02:00"}},
        ],
        ("rejected", 0),
    ),
    ("cursor-not-a-time", [{"id": "a", "at": "yesterday"}], ("rejected", 1)),
    ("cursor-a-number", [{"id": "a", "at": 1704067200}], ("rejected", 1)),
    ("cursor-a-dict", [{"id": "a", "at": {"when": "now"}}], ("rejected", 1)),
    ("text-in-integer", [{"id": "a", "n": "strong"}], ("rejected", 1)),
    ("integer-out-of-range", [{"id": "a", "n": 2**40}], ("rejected", 1)),
    ("bool-in-integer", [{"id": "a", "n": True}], ("rejected", 1)),
    ("nan-in-jsonb", [{"id": "a", "payload": {"$nan": True}}], ("rejected", 1)),
    ("impossible-date", [{"id": "a", "day": "2024-02-30"}], ("rejected", 1)),
    ("object-in-text", [{"id": "a", "label": {"$object": True}}], ("rejected", 1)),
    ("bytes-in-integer", [{"id": "a", "n": {"$bytes": "raw"}}], ("rejected", 1)),
    ("yields-an-int", [7], ("failed", "job: yielded a int; yield dicts or lists")),
]


def document(rows: list, **extra: object) -> dict:
    return {"rows": [GOOD, *rows], **extra}


def assert_one_clean_line(result) -> None:
    assert "Traceback" not in result.stdout + result.stderr
    [finished] = result.events("job_finished")
    assert finished["job"] == "hostile"


@pytest.mark.parametrize(("rows", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_hostile_value_is_quarantined_or_fails_cleanly_and_the_next_run_works(
    cli, db, feed, rows, expected
):
    feed.serve(document(rows))

    result = cli("run", "hostile", HOSTILE_URL=feed.url, **HOSTILE)

    assert_one_clean_line(result)
    [finished] = result.events("job_finished")
    run = db.runs()[-1]
    if expected[0] == "rejected":
        assert result.returncode == 0, result.stderr
        assert (finished["status"], finished["rejected"]) == ("succeeded", expected[1])
        assert db.scalar("SELECT count(*) FROM nightshift.rejects") == expected[1]
        assert db.scalar("SELECT count(*) FROM hostile WHERE id = 'good'") == 1
    else:
        assert result.returncode == 1
        [line] = result.stderr.strip().splitlines()
        assert line == f"error: hostile failed: {expected[1]}"
        assert run["status"] == "failed"
    # The next run, with good data, works.
    feed.serve({"rows": [{**GOOD, "id": "next", "at": "2030-01-01T00:00:00Z"}]})
    again = cli("run", "hostile", HOSTILE_URL=feed.url, **HOSTILE)
    assert again.returncode == 0, again.stderr
    assert db.scalar("SELECT count(*) FROM hostile WHERE id = 'next'") == 1


def test_a_job_that_raises_fails_with_one_line_and_its_trace_only_at_debug(cli, db, feed):
    feed.serve(document([], **{"raise": "boom"}))

    quiet = cli("run", "hostile", HOSTILE_URL=feed.url, **HOSTILE)
    loud = cli("run", "hostile", HOSTILE_URL=feed.url, LOG_LEVEL="DEBUG", **HOSTILE)

    for result in (quiet, loud):
        assert result.returncode == 1
        assert result.stderr.strip() == "error: hostile failed: job: RuntimeError: boom"
    assert "Traceback" not in quiet.stdout
    assert "Traceback" in loud.stdout  # the job_raised line carries it, for the job's author
    assert [run["status"] for run in db.runs()] == ["failed", "failed"]
    assert db.scalar("SELECT count(*) FROM hostile") == 0  # its batch never committed


def test_a_uuid_cursor_is_compared_as_a_uuid_across_runs(cli, db, feed):
    first = "7b0e1c1e-0000-4000-8000-000000000001"
    feed.serve({"rows": [{"id": first}, {"id": {"$uuid": "7b0e1c1e-0000-4000-8000-000000000000"}}]})
    assert cli("run", "by_uuid", HOSTILE_URL=feed.url, **HOSTILE).returncode == 0
    assert db.state("by_uuid") == {"cursor": first}

    feed.serve({"rows": [{"id": {"$uuid": "7b0e1c1e-0000-4000-8000-000000000002"}}]})
    result = cli("run", "by_uuid", HOSTILE_URL=feed.url, **HOSTILE)

    assert result.returncode == 0, result.stderr
    assert db.state("by_uuid") == {"cursor": "7b0e1c1e-0000-4000-8000-000000000002"}


def test_the_worker_stays_healthy_through_every_hostile_value(workers, cli, db, feed):
    _, tail = workers(
        HOSTILE_URL=feed.url, HOSTILE_SCHEDULE="off", BY_UUID_SCHEDULE="off", **HOSTILE
    )
    tail.wait_event("trigger_listener_started")

    for case, rows, expected in CASES:
        feed.serve(document(rows))
        before = len(tail.events("job_finished"))
        assert cli("trigger", "hostile", **HOSTILE).returncode == 0
        wait_for(lambda n=before: len(tail.events("job_finished")) > n, what=f"the run of {case}")
        finished = tail.events("job_finished")[-1]
        status = "succeeded" if expected[0] == "rejected" else "failed"
        assert finished["status"] == status, (case, finished)

    feed.serve({"rows": [{**GOOD, "id": "last", "at": "2031-01-01T00:00:00Z"}]})
    before = len(tail.events("job_finished"))
    cli("trigger", "hostile", **HOSTILE)
    wait_for(lambda: len(tail.events("job_finished")) > before, what="the last run")
    assert tail.events("job_finished")[-1]["status"] == "succeeded"
    assert db.scalar("SELECT count(*) FROM hostile WHERE id = 'last'") == 1
    assert db.scalar("SELECT count(*) FROM nightshift.runs WHERE status = 'running'") == 0
    assert "Traceback" not in "".join(tail.raw)
    assert not [line for line in tail.lines if line["event"] == "job_crashed"]
    json.dumps(tail.lines)  # every line was JSON


def test_wide_rows_make_smaller_batches_capped_by_bytes(cli, db, feed):
    # Each row's values take 6 * 8 + 3 + 1000 = 1051 bytes: ten of them reach 10,000.
    feed.serve({"rows": [{"id": f"r{i:02d}", "label": "x" * 1000} for i in range(50)]})

    result = cli("run", "hostile", HOSTILE_URL=feed.url, BATCH_MAX_BYTES="10000", **HOSTILE)

    assert result.returncode == 0, result.stderr
    [finished] = result.events("job_finished")
    assert (finished["rows"], finished["batches"]) == (50, 5)


def test_a_secret_the_job_reads_is_masked_in_its_logs_error_record_and_alert(
    cli, db, feed, webhook
):
    token = "leaky-Token-0451-distinctive"

    result = cli(
        "run",
        "leaky",
        LEAKY_TOKEN=token,
        ALERT_WEBHOOK_URL=webhook.url,
        LOG_LEVEL="DEBUG",
        **HOSTILE,
    )

    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == "error: leaky failed: job: RuntimeError: the source refused token ***"
    )
    [line] = result.events("token_read")
    assert (line["token"], line["note"]) == ("***", "the token is ***")
    assert token not in result.stdout + result.stderr
    assert token not in str(db.query("SELECT error FROM nightshift.runs"))
    [alert] = webhook.received
    assert token not in str(alert)
