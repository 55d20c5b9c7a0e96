"""The resolver's limits, through the real worker and CLI: a two-minute outage with three
retriers costs a bounded number of Platform API calls; a malformed URL never leaks a fragment.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.conftest import PASSWORD, Database, Gate
from tests.faults import HerokuApi
from tests.support import LogTail, synthetic_feed, wait_for

TOKEN = "HRKU-0123456789abcdef-budget-token"
APP = "nightshift"
OUTAGE = 120.0  # seconds the database stays down
# The defaults under test (config/settings.py: RESOLVER_BURST, RESOLVER_INTERVAL).
BURST, INTERVAL = 5, 12.0


def api_env(api: HerokuApi, **more: str) -> dict[str, str]:
    return {
        "HEROKU_API_KEY": TOKEN,
        "HEROKU_APP_NAME": APP,
        "HEROKU_API_URL": api.url,
        "DATABASE_URL": "",
        **more,
    }


def outage(cli: Any, workers: Any, feed: Any, own: Database, **env: str) -> dict[str, Any]:
    """A worker with a run held at the gate, its queue watcher and housekeeping; the database
    stopped for OUTAGE seconds, then started. What the Platform API was asked meanwhile."""
    assert cli("migrate", DATABASE_URL=own.url).returncode == 0
    feed.serve(synthetic_feed(3000))
    gate = Gate(own)
    try:
        gate.install(after=1000)
        with HerokuApi({"DATABASE_URL": own.url}, token=TOKEN, app=APP) as api:
            _, tail = workers(**api_env(api, BATCH_SIZE="500", EARTHQUAKES_SCHEDULE="off", **env))
            tail.wait_event("trigger_listener_started")
            assert cli("trigger", "earthquakes", DATABASE_URL=own.url).returncode == 0
            wait_for(lambda: gate.waiting(), what="the queued run to wait at the gate")
            assert own.scalar("SELECT count(*) FROM earthquakes") == 1000

            retries_before, asked_before = len(tail.events("db_retry")), api.requests
            down = time.monotonic()
            own.cluster.stop("immediate")
            # Three retriers: the run (its session was at the gate), the queue watcher (its
            # LISTEN session) and housekeeping (a new session every 30 s). The outage lasts
            # OUTAGE seconds whatever they do: this wait is its length, not an event.
            wait_for(
                lambda: time.monotonic() - down >= OUTAGE, timeout=OUTAGE + 10, what="the outage"
            )
            own.cluster.start(*own.cluster.options)
            window = time.monotonic() - down
            asked = api.requests - asked_before
            arrivals = [t - down for t in api.arrivals if t >= down]

            finished = tail.wait_event("job_finished", timeout=60)
            retries = tail.events("db_retry")[retries_before:]
            return {
                "asked": asked,
                "window": window,
                "arrivals": arrivals,
                "finished": finished,
                "retries": retries,
                "throttled": tail.events("resolver_throttled"),
                "rows": own.scalar("SELECT count(*) FROM earthquakes"),
            }
    finally:
        gate.close()


@pytest.mark.timeout(300)
def test_a_two_minute_outage_with_three_retriers_costs_a_bounded_number_of_api_calls(
    cli, workers, feed, own
):
    seen = outage(cli, workers, feed, own)

    # Every retrier was at it: each one's first attempt has attempt == 1.
    first_attempts = [r for r in seen["retries"] if r["attempt"] == 1]
    assert len(first_attempts) >= 3, first_attempts
    assert any(r.get("job") == "earthquakes" for r in seen["retries"])  # the run's own
    # The bound. A token bucket holds at most BURST tokens when the outage starts and gains
    # one per INTERVAL: over the window (OUTAGE plus the time to stop and start the server,
    # ~121 s) at most 5 + 121 / 12 = 15 calls; +1 for a call granted just before the stop and
    # counted just after it. Unbounded, three retriers at one resolution per backoff wait
    # (1-2 s once capped) asked 232 times in the same two minutes (measured before the budget;
    # 14 with it).
    bound = BURST + seen["window"] / INTERVAL + 1
    assert seen["asked"] <= bound, (seen["asked"], seen["arrivals"])
    # The sustained rate: in the last minute, one call per INTERVAL (+1 at the edge).
    last_minute = [t for t in seen["arrivals"] if OUTAGE - 60 <= t <= OUTAGE]
    assert len(last_minute) <= 60 / INTERVAL + 1, seen["arrivals"]
    assert any(line["serving"] == "the last good URL" for line in seen["throttled"])

    # And it recovers: the run completes with every row.
    assert seen["finished"]["status"] == "succeeded", seen["finished"]
    assert seen["rows"] == 3000


# -- malformed URLs --------------------------------------------------------------------------------
AT_URL = "postgresql://app:Zq9@Xk7@Wm3@127.0.0.1:5432/db"
FRAGMENTS = ("Zq9", "Xk7", "Wm3", "Zq9@Xk7@Wm3", "Xk7@Wm3", AT_URL)
REFUSAL = "its user or password holds '@': percent-encode it as %40"


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


def assert_refused_without_fragments(result: Any, source: str, retried: bool = True) -> None:
    output = result.stdout + result.stderr
    for fragment in FRAGMENTS:
        assert fragment not in output, f"a fragment of the password leaked: {fragment!r}"
    [line] = error_lines(output)
    if retried:  # a file or a command may be fixed while we wait
        assert line.startswith("error: gave up after 1 s and ")
        assert line.endswith(
            f"last cause resolver_failed: cannot resolve the database URL from {source}: {REFUSAL}"
        )
    else:  # the process's own environment cannot change: at once
        assert line == f"error: cannot resolve the database URL from {source}: {REFUSAL}"


def test_a_password_with_at_signs_in_database_url_is_refused_at_once_without_a_fragment(cli):
    result = cli("check", DATABASE_URL=AT_URL, DB_RETRY_TIMEOUT="1")

    assert result.returncode == 1
    assert_refused_without_fragments(result, "environment DATABASE_URL", retried=False)


def test_a_password_with_at_signs_in_the_url_file_is_refused_without_a_fragment(cli, tmp_path):
    path = tmp_path / "database_url"
    path.write_text(AT_URL + "\n")

    result = cli("check", DATABASE_URL="", DATABASE_URL_FILE=str(path), DB_RETRY_TIMEOUT="1")

    assert result.returncode == 1
    assert_refused_without_fragments(result, f"DATABASE_URL_FILE ({path})")


def test_a_url_file_caught_mid_rewrite_is_retried_then_used(cli, db, tmp_path):
    path = tmp_path / "database_url"
    path.write_text(AT_URL)
    process = cli.spawn("check", DATABASE_URL="", DATABASE_URL_FILE=str(path))
    try:
        logs = LogTail(process.stderr)  # check logs to stderr
        retry = logs.wait_event("db_retry")
        assert retry["cause"] == "resolver_failed"
        assert retry["error"].endswith(REFUSAL)
        path.write_text(db.url)
        assert process.wait(timeout=30) == 0
        stdout = process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    output = stdout + logs.text()
    assert stdout.startswith(f"database:  DATABASE_URL_FILE ({path}) (host=127.0.0.1")
    for fragment in (*FRAGMENTS, PASSWORD, db.url):
        assert fragment not in output
    assert not error_lines(output)
