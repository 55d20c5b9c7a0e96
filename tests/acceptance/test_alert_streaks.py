"""Alerts for one cause are rate-limited: one per job per failure streak (its first failed
run), the all-clear once it succeeds again, and a new streak alerts again. A refused request
neither opens, extends nor ends a streak. The runs are the real CLI; the webhook a real local
server."""

from __future__ import annotations

import threading

import pytest

from config import Settings
from worker.alerts import send_run_alerts
from worker.database import DatabaseUnavailable
from worker.run.run import RunResult

JOBS = {"JOBS_PACKAGE": "tests.queue_jobs"}


def test_a_failure_streak_alerts_once_then_recovers_once_and_a_new_streak_alerts_again(
    cli, db, webhook, tmp_path
):
    flag = tmp_path / "flaky"
    env = {**JOBS, "FLAKY_FILE": str(flag), "ALERT_WEBHOOK_URL": webhook.url}

    def run(outcome: str):
        flag.write_text(outcome)
        return cli("run", "flaky", **env)

    streak = [run("fail") for _ in range(3)]
    # A request settled as refused in the middle of the streak is passed over.
    db.query(
        "INSERT INTO nightshift.runs (job, trigger, status, finished_at, error)"
        " VALUES ('flaky', 'queued', 'refused', now(), 'request 1 refused: since ...')"
    )
    streak.append(run("fail"))
    recovered, again = run("ok"), run("fail")

    assert [r.returncode for r in [*streak, recovered, again]] == [1, 1, 1, 1, 0, 1]
    runs = db.runs()
    assert [alert["alert"] for alert in webhook.received] == ["failed", "recovered", "failed"]
    assert [alert["run_id"] for alert in webhook.received] == [
        runs[0]["id"],
        runs[5]["id"],
        runs[6]["id"],
    ]
    assert webhook.received[1]["failed_runs"] == 4
    assert [len(r.events("alert_sent")) for r in [*streak, recovered, again]] == [1, 0, 0, 0, 1, 1]
    held = [line for r in streak for line in r.events("alert_held")]
    assert [(h["failed_runs"], h["run_id"], h["alert"]) for h in held] == [
        (2, runs[1]["id"], "failed"),
        (3, runs[2]["id"], "failed"),
        (4, runs[4]["id"], "failed"),
    ]


def test_a_failed_run_whose_history_cannot_be_read_in_time_still_alerts(webhook):
    """The streak is read from the run history. When the database is out of reach (the read
    takes its whole budget, then fails), the alert keeps the time it needs, and goes."""
    settings = Settings.from_env({"ALERT_WEBHOOK_URL": webhook.url, "ALERT_DEADLINE": "2"})
    budgets: list[float] = []

    def unreachable(budget: float) -> int:
        budgets.append(budget)
        threading.Event().wait(budget)  # a database that never answers, for all it is given
        raise DatabaseUnavailable("the database did not answer within the budget")

    send_run_alerts(settings, RunResult("flaky", "failed", run_id=7, error="job: x"), unreachable)

    assert budgets == [pytest.approx(1.0, abs=0.05)]  # half of ALERT_DEADLINE
    assert [(alert["alert"], alert["run_id"]) for alert in webhook.received] == [("failed", 7)]
