"""Alert delivery: a webhook that is down, slow or busy is tried again within a bound, every
failed attempt is logged without the URL's secret path, and a job that succeeds after failed
runs says "recovered" once.

The webhook is a real local HTTP server following a script (answer 503, drop the connection,
answer 429 with a Retry-After, never answer, ...); the runs are the real CLI and worker.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.support import Result, load_fixture

SECRET_PATH = "/services/T0ALERTS/B0ALERTS/XXALERTSTOKEN"
FRAGMENTS = ("T0ALERTS", "B0ALERTS", "XXALERTSTOKEN")
FAST = {"ALERT_RETRY_DELAY": "0.05", "HTTP_RETRIES": "0"}  # the feed's own retries: none


class ScriptedWebhook:
    """A webhook on 127.0.0.1 that answers each POST with the next step of its script, then
    200: a status (int), (status, headers), "drop" (close without an answer) or "hang" (answer
    nothing until the test ends). It records every body and when it arrived."""

    def __init__(self) -> None:
        self.script: list[Any] = []
        self.received: list[dict[str, Any]] = []
        self.arrived_at: list[float] = []
        self.released = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                server.received.append(json.loads(self.rfile.read(length)))
                server.arrived_at.append(time.monotonic())
                step = server.script.pop(0) if server.script else 200
                if step == "drop":
                    self.close_connection = True
                    return
                if step == "hang":
                    server.released.wait(60)
                    self.close_connection = True
                    return
                status, headers = step if isinstance(step, tuple) else (step, {})
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}{SECRET_PATH}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._server.server_port}"

    def gaps(self) -> list[float]:
        """Seconds between one POST's arrival and the next's."""
        return [b - a for a, b in zip(self.arrived_at, self.arrived_at[1:], strict=False)]

    def close(self) -> None:
        self.released.set()
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def hook() -> Iterator[ScriptedWebhook]:
    server = ScriptedWebhook()
    yield server
    server.close()


def assert_no_webhook_secret(output: str) -> None:
    for fragment in FRAGMENTS:
        assert fragment not in output, "the webhook's secret path leaked into output"


def failing_run(cli, feed, hook: ScriptedWebhook, **env: str) -> Result:
    feed.fail(500)
    result = cli("run", "earthquakes", ALERT_WEBHOOK_URL=hook.url, **{**FAST, **env})
    assert result.returncode == 1  # the run's own failure, whatever the webhook does
    assert_no_webhook_secret(result.stdout + result.stderr)
    return result


def attempts(result: Result) -> list[tuple]:
    """Each alert_failed line as (attempt, reason, retry_in_s or gave_up)."""
    return [
        (line["attempt"], line["reason"], line.get("retry_in_s", line.get("gave_up")))
        for line in result.events("alert_failed")
    ]


# -- retries within a bound ----------------------------------------------------------------------
def test_a_webhook_failing_twice_gets_the_alert_on_the_third_attempt(cli, db, feed, hook):
    hook.script = [503, "drop"]

    result = failing_run(cli, feed, hook)

    assert len(hook.received) == 3
    assert hook.received[0] == hook.received[1] == hook.received[2]  # the same message
    [run] = db.runs()
    assert (hook.received[2]["run_id"], hook.received[2]["alert"]) == (run["id"], "failed")
    assert attempts(result) == [(1, "answered 503", 0.05), (2, "ConnectionError", 0.1)]
    for line in result.events("alert_failed"):
        assert (line["host"], line["alert"], line["level"]) == (hook.host, "failed", "warning")
    [sent] = result.events("alert_sent")
    assert (sent["attempt"], sent["host"], sent["alert"]) == (3, hook.host, "failed")
    assert hook.gaps()[0] >= 0.05 and hook.gaps()[1] >= 0.1  # the waits double


def test_a_webhook_that_stays_down_gets_four_attempts_then_is_given_up(cli, db, feed, hook):
    hook.script = [503, 502, "drop", 500, 503]  # a fifth answer is never asked for

    result = failing_run(cli, feed, hook)

    assert len(hook.received) == 4
    assert attempts(result) == [
        (1, "answered 503", 0.05),
        (2, "answered 502", 0.1),
        (3, "ConnectionError", 0.2),
        (4, "answered 500", "4 attempt(s) made"),
    ]
    assert result.events("alert_sent") == []
    [finished] = result.events("job_finished")
    assert finished["status"] == "failed"
    assert db.runs()[0]["status"] == "failed"
    assert "Traceback" not in result.stdout + result.stderr


def test_a_webhook_refusing_the_alert_with_a_4xx_is_not_asked_again(cli, feed, hook):
    hook.script = [404]

    result = failing_run(cli, feed, hook)

    assert len(hook.received) == 1
    assert attempts(result) == [(1, "answered 404", "not retried")]


def test_a_retry_after_is_honoured_up_to_alert_max_delay(cli, feed, hook):
    hook.script = [(429, {"Retry-After": "1"}), (503, {"Retry-After": "3600"})]

    result = failing_run(cli, feed, hook, ALERT_MAX_DELAY="1.5")

    assert len(hook.received) == 3
    # The backoff alone would have waited 0.05 s, then 0.1 s.
    assert attempts(result) == [(1, "answered 429", 1.0), (2, "answered 503", 1.5)]
    first, second = hook.gaps()
    assert 1.0 <= first < 1.5
    assert 1.5 <= second < 3.0  # an hour asked, capped at ALERT_MAX_DELAY
    assert result.events("alert_sent")[0]["attempt"] == 3


def test_a_webhook_that_never_answers_holds_the_run_no_longer_than_alert_deadline(
    cli, db, feed, hook
):
    hook.script = ["hang"]

    result = failing_run(cli, feed, hook, ALERT_DEADLINE="2")

    assert len(hook.received) == 1
    [failed] = result.events("alert_failed")
    assert (failed["attempt"], failed["reason"]) == (1, "ReadTimeout")
    assert failed["gave_up"] == "no time left within ALERT_DEADLINE (2 s)"
    [finished] = result.events("job_finished")
    took = dt.datetime.fromisoformat(failed["timestamp"]) - dt.datetime.fromisoformat(
        finished["timestamp"]
    )
    assert dt.timedelta(seconds=1.9) <= took < dt.timedelta(seconds=3)
    assert db.runs()[0]["status"] == "failed"


def test_a_shutdown_ends_the_wait_for_the_next_attempt(workers, cli, db, feed, hook):
    """A worker whose run failed and whose webhook is down stops at SIGTERM, not 10 s later."""
    assert cli("migrate").returncode == 0
    feed.fail(500)
    hook.script = [503]
    process, tail = workers(
        EARTHQUAKES_SCHEDULE="off",
        ALERT_WEBHOOK_URL=hook.url,
        ALERT_RETRY_DELAY="10",
        HTTP_RETRIES="0",
    )
    tail.wait_event("trigger_listener_started")
    db.query("INSERT INTO nightshift.triggers (job) VALUES ('earthquakes')")
    failed = tail.wait_event("alert_failed")
    assert (failed["attempt"], failed["reason"], failed["retry_in_s"]) == (1, "answered 503", 10)

    signalled = time.monotonic()
    process.send_signal(signal.SIGTERM)

    assert process.wait(timeout=8) == 0
    assert time.monotonic() - signalled < 5
    [abandoned] = tail.events("alert_abandoned")
    assert (abandoned["attempts"], abandoned["reason"]) == (1, "shutdown requested")
    assert len(hook.received) == 1
    assert_no_webhook_secret(tail.text())


# -- recovered ----------------------------------------------------------------------------------
def test_a_job_that_succeeds_after_failed_runs_says_recovered_exactly_once(cli, db, feed, hook):
    first = failing_run(cli, feed, hook)
    second = failing_run(cli, feed, hook)  # the same failure streak: its alert is held
    # A run cut short between them alerts nobody and is passed over.
    db.query(
        "INSERT INTO nightshift.runs (job, trigger, status, started_at, finished_at)"
        " VALUES ('earthquakes', 'schedule', 'interrupted', now(), now())"
    )
    assert [alert["alert"] for alert in hook.received] == ["failed"]
    assert [line["alert"] for line in first.events("alert_sent")] == ["failed"]
    assert second.events("alert_sent") == second.events("alert_failed") == []
    [held] = second.events("alert_held")
    assert (held["alert"], held["failed_runs"], held["run_id"]) == ("failed", 2, db.runs()[1]["id"])
    feed.serve(load_fixture())
    hook.script = [503]  # the all-clear is retried like any alert

    recovered = cli("run", "earthquakes", ALERT_WEBHOOK_URL=hook.url, **FAST)
    then = cli("run", "earthquakes", ALERT_WEBHOOK_URL=hook.url, **FAST)

    assert (recovered.returncode, then.returncode) == (0, 0)
    runs = db.runs()
    assert [run["status"] for run in runs] == [
        "failed",
        "failed",
        "interrupted",
        "succeeded",
        "succeeded",
    ]
    alerts = hook.received[1:]
    assert len(alerts) == 2  # the 503, then the one it took
    assert alerts[0] == alerts[1]
    assert alerts[1] == {
        "text": (
            f":white_check_mark: Nightshift job earthquakes recovered (run {runs[3]['id']}"
            " on test.1) after 2 failed run(s)"
        ),
        "alert": "recovered",
        "job": "earthquakes",
        "run_id": runs[3]["id"],
        "status": "succeeded",
        "error": None,
        "rejected": 0,
        "dyno": "test.1",
        "failed_runs": 2,
    }
    assert attempts(recovered) == [(1, "answered 503", 0.05)]
    [sent] = recovered.events("alert_sent")
    assert (sent["alert"], sent["attempt"]) == ("recovered", 2)
    # The next success finds no failed run before it: nothing more.
    assert then.events("alert_sent") == then.events("alert_failed") == []
    assert len(hook.received) == 3
    for result in (recovered, then):
        assert_no_webhook_secret(result.stdout + result.stderr)


def test_a_job_that_never_failed_sends_nothing_when_it_succeeds(cli, db, hook):
    for _ in range(2):
        result = cli("run", "earthquakes", ALERT_WEBHOOK_URL=hook.url, **FAST)
        assert result.returncode == 0
        assert result.events("alert_sent") == []

    assert hook.received == []
    assert [run["status"] for run in db.runs()] == ["succeeded", "succeeded"]


def test_a_success_that_refuses_rows_after_a_failure_recovers_then_warns(cli, db, feed, hook):
    failing_run(cli, feed, hook)
    document = load_fixture()
    document["features"][5]["properties"]["mag"] = "strong"
    feed.serve(document)

    result = cli("run", "earthquakes", ALERT_WEBHOOK_URL=hook.url, **FAST)

    assert result.returncode == 0
    assert [alert["alert"] for alert in hook.received] == ["failed", "recovered", "rejected"]
    assert hook.received[1]["failed_runs"] == 1
    assert hook.received[2]["rejected"] == 1
    assert [line["alert"] for line in result.events("alert_sent")] == ["recovered", "rejected"]
    assert [run["status"] for run in db.runs()] == ["failed", "succeeded"]
