"""The status page's views: the jobs (with their plots), the run history, one run, "Run now".

Every value a page shows that came from a run's error, parameters or refused rows goes through
`worker.redact` (the `redact` filter and `shown_params`): the worker masks secrets before it
records them, and the page masks them again, so no password, URL credential or token is shown.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.exceptions import HTTPException

from config import Settings
from worker.errors import NightshiftError
from worker.redact import MASK, is_sensitive_param, redact
from worker.registry import Job
from worker.service.cron import next_fire
from worker.store import queries, status
from worker.store.records import Enqueued, RunningRun, RunRecord, utc_text
from worker.web.plot import Plot, duration_text, plot, seconds

views = Blueprint("status", __name__, template_folder="templates")
PLOTTED_RUNS = 30
HISTORY_LIMIT, HISTORY_MAX = 100, 1000
REJECTS_SHOWN = 100


@dataclass(frozen=True)
class JobRow:
    """One job as the jobs page shows it."""

    job: Job
    schedule: str
    next_fire: dt.datetime | None
    last: RunRecord | None
    running: RunningRun | None
    plot: Plot


def _app() -> dict[str, Any]:
    return current_app.extensions["nightshift"]


def _read(work: Any, empty: Any) -> Any:
    """Run a read; before the first `migrate` there is simply nothing to show."""
    return _app()["store"].run(queries.once_migrated(work, empty))


@views.get("/")
def jobs_page() -> str:
    jobs: dict[str, Job] = _app()["jobs"]

    def read(cur: Any) -> tuple[dict[str, list[RunRecord]], dict[str, RunningRun]]:
        return status.recent_runs_per_job(cur, PLOTTED_RUNS), queries.running_now(cur)

    recent, running = _read(read, ({}, {}))
    rows = []
    for job in sorted(jobs.values(), key=lambda j: j.name):
        expr, cron = job.schedule_in_force(), job.cron_trigger()
        runs = recent.get(job.name, [])
        rows.append(
            JobRow(
                job=job,
                schedule=f"{expr} ({job.timezone})" if expr else "off",
                next_fire=next_fire(cron) if cron else None,
                last=runs[0] if runs else None,
                running=running.get(job.name),
                plot=plot(job.name, runs),
            )
        )
    return render_template("jobs.html", rows=rows, plotted=PLOTTED_RUNS)


@views.get("/runs")
def runs_page() -> str:
    job = request.args.get("job") or None
    state = request.args.get("status") or None
    if state is not None and state not in status.STATUSES:
        abort(400, f"unknown status {state!r}; one of {', '.join(status.STATUSES)}")
    limit = request.args.get("limit", HISTORY_LIMIT, type=int)
    if limit is None or not 1 <= limit <= HISTORY_MAX:
        abort(400, f"limit must be a whole number from 1 to {HISTORY_MAX}")

    def read(cur: Any) -> tuple[list[RunRecord], list[str]]:
        return status.run_history(cur, job, state, limit), status.jobs_in_history(cur)

    runs, named = _read(read, ([], []))
    return render_template(
        "runs.html",
        runs=runs,
        jobs=sorted(set(_app()["jobs"]) | set(named)),
        statuses=status.STATUSES,
        job=job,
        status=state,
        limit=limit,
    )


@views.get("/runs/<int:run_id>")
def run_page(run_id: int) -> str:
    def read(cur: Any) -> tuple[status.RunDetail | None, list[Any]]:
        detail = status.run_detail(cur, run_id)
        rejects = status.rejects_of_run(cur, run_id, REJECTS_SHOWN) if detail else []
        return detail, rejects

    detail, rejects = _read(read, (None, []))
    if detail is None:
        abort(404, f"no run {run_id}")
    return render_template(
        "run.html",
        detail=detail,
        run=detail.run,
        params=shown_params(detail.params),
        rejects=rejects,
        rejects_shown=REJECTS_SHOWN,
    )


@views.post("/jobs/<name>/run")
def run_now(name: str) -> Any:
    """Queue a run of the job for a worker, as `python -m worker trigger JOB` does."""
    job = _app()["jobs"].get(name)
    if job is None:
        abort(404, f"no job {name!r}")
    settings: Settings = _app()["settings"]

    def enqueue(cur: Any) -> Enqueued:
        return queries.request_run(
            cur, job.name, {}, False, None, None, requested_by=f"status page@{settings.dyno}"
        )

    try:
        done = _read(enqueue, None)
    except NightshiftError as exc:  # e.g. a job the database does not know yet (not migrated)
        flash(f"{job.name}: could not queue a run: {exc}", "error")
        return redirect(url_for("status.jobs_page"), code=303)
    if done is None:
        flash(f"{job.name}: no Nightshift tables yet: run `python -m worker migrate`", "error")
    elif done.joined:
        # The queue coalesces identical pending requests: this one rides on one already waiting.
        flash(f"{job.name}: joined a pending request {done.id}; a running worker picks it up", "ok")
    else:
        flash(f"{job.name}: queued (request {done.id}); a running worker picks it up", "ok")
    return redirect(url_for("status.jobs_page"), code=303)


@views.app_errorhandler(NightshiftError)
def unavailable(exc: NightshiftError) -> tuple[str, int]:
    # Already one secret-free line (NightshiftError redacts); redacted again on the page.
    return render_template("error.html", code=503, message=f"database: {exc}"), 503


@views.app_errorhandler(HTTPException)
def http_error(exc: HTTPException) -> tuple[str, int]:
    code = exc.code or 500
    return render_template("error.html", code=code, message=exc.description), code


def shown_params(params: dict[str, Any]) -> list[tuple[str, str]]:
    """A run's parameters as the page shows them: a credential's value masked by its name,
    every other value redacted as a log line would be."""
    shown = []
    for name, value in sorted(params.items()):
        text = value if isinstance(value, str) else repr(value)
        shown.append((redact(name), MASK if is_sensitive_param(name) else redact(text)))
    return shown


def when_filters() -> dict[str, Any]:
    """Jinja filters: times in UTC, durations, and redaction."""

    def took(run: RunRecord) -> str:
        return "-" if run.duration is None else duration_text(seconds(run))

    return {"when": utc_text, "took": took, "redact": lambda text: redact(str(text or ""))}
