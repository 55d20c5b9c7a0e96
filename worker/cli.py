"""`python -m worker [command]` — the worker (no command) and the operator's commands.

Exit codes: 0 ok; 1 the run (or command) failed; 2 unknown job or bad usage; 3 the job is
running elsewhere.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from config import ConfigError, Settings
from worker import logs
from worker.database import Database
from worker.errors import NightshiftError, UnknownJob
from worker.redact import redact
from worker.registry import Job, discover, lookup
from worker.run.errors import JobBusy, RunError
from worker.run.rejects import replay_rejects
from worker.run.request import MANUAL, QUEUED, RunRequest, parse_params, window
from worker.service.cron import next_fire
from worker.show import json_text, params_text, table
from worker.store import queries
from worker.store.drift import Difference, compare, counted, report
from worker.store.migrate import (
    job_migration_files,
    job_migrations_applied,
    migrate,
    migrations,
    shown,
)
from worker.store.records import Enqueued, RunRecord, ServerFacts, utc_text
from worker.text import printable

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_BUSY = 0, 1, 2, 3
# An operator asking `check`, `jobs` or `runs` wants an answer soon, not a ridden-out outage.
CLI_BUDGET_SECONDS = 15.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m worker", description="Nightshift: a scheduled ETL worker."
    )
    commands = parser.add_subparsers(dest="command", metavar="command")
    commands.add_parser("serve", help="run the scheduler (the default)")
    run = commands.add_parser("run", help="run a job now, in the foreground")
    _request_arguments(run)
    run.add_argument(
        "--wait", action="store_true", help="if it runs elsewhere, wait for it and then run"
    )
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="extract and check the rows, write nothing; report counts and the first problems",
    )
    trigger = commands.add_parser("trigger", help="queue a run for a worker to pick up")
    _request_arguments(trigger)
    commands.add_parser("jobs", help="list jobs, their schedules and last runs")
    runs = commands.add_parser("runs", help="recent run history")
    runs.add_argument("job", nargs="?")
    runs.add_argument("--limit", type=int, default=20)
    runs.add_argument("--json", action="store_true", help="print a JSON array")
    rejects = commands.add_parser("rejects", help="rows a table refused, kept aside")
    rejects.add_argument("job", nargs="?")
    rejects.add_argument("--limit", type=int, default=50)
    rejects.add_argument("--json", action="store_true", help="print a JSON array")
    rejects.add_argument(
        "--replay", action="store_true", help="load them again; those that load are removed"
    )
    commands.add_parser("migrate", help="create or upgrade the tables")
    commands.add_parser("check", help="where the database is, and what it is")
    web = commands.add_parser("web", help="serve the status page on $PORT (needs STATUS_PASSWORD)")
    web.add_argument("--host", default="0.0.0.0", help="address to listen on (Heroku: 0.0.0.0)")
    return parser


def _request_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job")
    parser.add_argument("--full-refresh", action="store_true", help="ignore the saved state")
    parser.add_argument(
        "--param", action="append", default=[], metavar="KEY=VALUE", help="a run parameter"
    )
    parser.add_argument("--since", metavar="YYYY-MM-DD", help="backfill window start")
    parser.add_argument("--until", metavar="YYYY-MM-DD", help="backfill window end")


def _request(args: argparse.Namespace, kind: str) -> RunRequest:
    since, until = window(args.since, args.until)
    return RunRequest(
        kind=kind,
        params=parse_params(args.param),
        full_refresh=args.full_refresh,
        since=since,
        until=until,
    )


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    command = args.command or "serve"
    try:
        settings = Settings.from_env()
        # Logs share stdout with the worker's stream; commands that print results log to stderr.
        printing = command not in ("serve", "run", "web") or getattr(args, "dry_run", False)
        stream = sys.stderr if printing else sys.stdout
        logs.configure(settings.log_format, settings.log_level, stream)
        jobs = discover(settings.jobs_package)
        return COMMANDS[command](settings, jobs, args)
    except UnknownJob as exc:
        _fail(str(exc))
        return EXIT_USAGE
    except JobBusy as exc:
        _fail(f"{exc}; try again when it is done, or use --wait")
        return EXIT_BUSY
    except (ConfigError, NightshiftError) as exc:
        _fail(str(exc))
        return EXIT_FAILED
    except Exception as exc:  # a bug of ours: one line all the same; the trace at DEBUG
        _fail(f"unexpected {type(exc).__name__}: {exc}")
        if os.environ.get("LOG_LEVEL", "").upper() == "DEBUG":
            for line in traceback.format_exc().splitlines():
                print(printable(redact(line)), file=sys.stderr)
        return EXIT_FAILED


# Every line printed is redacted, then escaped (`printable`): whatever part of it came from a
# row, a source, an error text or the database, the terminal shows it and obeys none of it.
def _fail(message: str) -> None:
    print(f"error: {printable(redact(message))}", file=sys.stderr)


def _out(line: str = "") -> None:
    print(printable(redact(line)))


def _out_json(value: Any) -> None:
    """A JSON document for scripts, its strings escaped (worker.show.json_text)."""
    print(redact(json_text(value)))


# -- commands ---------------------------------------------------------------------------------
def cmd_serve(settings: Settings, jobs: Mapping[str, Job], _args: argparse.Namespace) -> int:
    from worker.service.worker import Worker

    return Worker(settings, jobs).serve()


def cmd_run(settings: Settings, jobs: Mapping[str, Job], args: argparse.Namespace) -> int:
    from worker.run.run import Run
    from worker.service.shutdown import Shutdown

    job = lookup(jobs, args.job)
    request = _request(args, MANUAL)
    shutdown = Shutdown()
    shutdown.install()
    if args.dry_run:
        return _dry_run(settings, job, request, shutdown)
    result = Run(settings, job, request, shutdown).execute(wait=args.wait)
    if result.status == "succeeded":
        return EXIT_OK
    _fail(f"{job.name} {result.status}: {result.error}")
    return EXIT_FAILED


def _dry_run(settings: Settings, job: Job, request: RunRequest, shutdown: Any) -> int:
    from worker.run.dry_run import DryRun

    try:
        report = DryRun(settings, job, request, shutdown).execute()
    except RunError as exc:
        _fail(f"{job.name} dry run failed: {exc.describe()}")
        return EXIT_FAILED
    for line in report.lines():
        _out(line)
    return EXIT_OK if report.refused == 0 else EXIT_FAILED


def cmd_trigger(settings: Settings, jobs: Mapping[str, Job], args: argparse.Namespace) -> int:
    job = lookup(jobs, args.job)
    request = _request(args, QUEUED)

    def enqueue(cur: Any) -> Enqueued:
        migrate(cur, jobs.values())
        return queries.request_run(
            cur, job.name, dict(request.params), request.full_refresh,
            request.since, request.until, requested_by=f"cli@{settings.dyno}",
        )  # fmt: skip

    with Database(settings, "nightshift:trigger") as db:
        done = db.run(enqueue, budget=_cli_budget(settings))
    if done.joined:  # an identical request is still pending: its run serves this one too
        _out(
            f"joined pending request {done.id} for {job.name} (queued at"
            f" {utc_text(done.requested_at)}); no new run queued"
        )
    else:
        _out(f"queued request {done.id} to run {job.name}; a running worker picks it up")
    return EXIT_OK


def cmd_jobs(settings: Settings, jobs: Mapping[str, Job], _args: argparse.Namespace) -> int:
    with Database(settings, "nightshift:cli", writable=False) as db:
        last, running = _query(
            db, lambda cur: (queries.last_runs(cur), queries.running_now(cur)), ({}, {})
        )
    rows = []
    for job in sorted(jobs.values(), key=lambda j: j.name):
        cron = job.cron_trigger()
        expr = job.schedule_in_force()
        fire = next_fire(cron) if cron else None
        run = last.get(job.name)
        now = running.get(job.name)
        rows.append(
            [
                job.name,
                f"{expr} ({job.timezone})" if expr else "off",
                utc_text(fire),
                f"{run.status} at {utc_text(run.started_at)}" if run else "never",
                f"run {now.id} on {now.dyno}" if now else "-",
                f"{job.schema}.{job.table}",
            ]
        )
    _table(["job", "schedule", "next run", "last run", "running now", "table"], rows)
    return EXIT_OK


def cmd_runs(settings: Settings, jobs: Mapping[str, Job], args: argparse.Namespace) -> int:
    if args.job:
        lookup(jobs, args.job)
    with Database(settings, "nightshift:cli", writable=False) as db:
        runs = _query(db, lambda cur: queries.recent_runs(cur, args.job, args.limit), [])
    if args.json:
        _out_json([run.as_json() for run in runs])
        return EXIT_OK
    rows = [
        [
            run.id,
            run.job,
            run.kind,
            run.status,
            run.rows,
            run.changed,
            run.rejected,
            utc_text(run.started_at),
            _took(run),
            params_text(run)[:80],
            (run.error or "")[:100],
        ]
        for run in runs
    ]
    header = ["id", "job", "trigger", "status", "rows", "changed", "rejected", "started", "took"]
    _table([*header, "params", "error"], rows)
    return EXIT_OK


def cmd_rejects(settings: Settings, jobs: Mapping[str, Job], args: argparse.Namespace) -> int:
    if args.replay:
        if not args.job:
            raise ConfigError("rejects --replay takes the job whose rejects to load again")
        job = lookup(jobs, args.job)
        with Database(settings, "nightshift:rejects") as db:
            done = db.run(lambda cur: replay_rejects(cur, job), budget=_cli_budget(settings))
        for reject_id, key in done.superseded:  # a later run wrote the key: kept, not undone
            _out(f"{job.name}: reject {reject_id} (key {key or '-'}) superseded by a later write")
        _out(
            f"{job.name}: {done.loaded} loaded, {len(done.superseded)} superseded,"
            f" {done.still_refused} still refused"
        )
        return EXIT_OK
    if args.job:
        lookup(jobs, args.job)
    with Database(settings, "nightshift:cli", writable=False) as db:
        found = _query(db, lambda cur: queries.list_rejects(cur, args.job, args.limit), [])
    if args.json:
        _out_json([reject.as_json() for reject in found])
        return EXIT_OK
    rows = [
        [r.id, r.job, r.run_id or "-", utc_text(r.rejected_at), r.key or "-", r.error[:100]]
        for r in found
    ]
    _table(["id", "job", "run", "rejected", "key", "error"], rows)
    return EXIT_OK


def cmd_migrate(settings: Settings, jobs: Mapping[str, Job], _args: argparse.Namespace) -> int:
    folder = settings.migrations_dir
    with Database(settings, "nightshift:migrate") as db:
        done = db.run(lambda cur: migrate(cur, jobs.values(), job_migrations_dir=folder))
    if done.refused:
        for line in done.refusal():
            _fail(line)
        for line in done.remedy():
            print(printable(redact(line)), file=sys.stderr)
        return EXIT_FAILED
    _out(f"migrations applied: {', '.join(done.migrations) or 'none needed'}")
    _out(f"migration files applied: {', '.join(done.job_migrations) or 'none'} ({shown(folder)})")
    _out(f"tables created or extended: {', '.join(done.tables) or 'none needed'}")
    return EXIT_OK


def cmd_check(settings: Settings, jobs: Mapping[str, Job], _args: argparse.Namespace) -> int:
    files = job_migration_files(settings.migrations_dir)

    def inspect(cur: Any) -> tuple[ServerFacts, int, set[int], list[Difference]]:
        facts, applied = queries.server_facts(cur), queries.migrations_applied(cur)
        return facts, applied, job_migrations_applied(cur), compare(cur, jobs.values())

    with Database(settings, "nightshift:check", writable=False) as db:
        facts, applied, files_applied, found = db.run(inspect, budget=_cli_budget(settings))
        source = db.resolved.describe() if db.resolved else "?"
    _out(f"database:  {source}")
    _out(f"server:    PostgreSQL {facts.server_version}")
    _out(f"ssl:       {'yes' if facts.ssl else 'no'}")
    role = "standby (in recovery)" if facts.in_recovery else "primary"
    _out(f"read-only: {'yes' if facts.read_only else 'no'} ({role})")
    _out(f"schema:    {applied}/{len(migrations())} migrations applied")
    waiting = [path.name for version, _, path in files if version not in files_applied]
    done = f"{len(files) - len(waiting)}/{len(files)} migration files in"
    _out(f"files:     {done} {shown(settings.migrations_dir)} applied" + (
        f"; waiting: {', '.join(waiting)} (run migrate)" if waiting else ""
    ))  # fmt: skip
    for line in report(found):
        _out(line)
    drift = [difference for difference in found if difference.drift]
    if drift:
        _fail(f"{counted(drift)}; see above")
        return EXIT_FAILED
    return EXIT_OK


def cmd_web(settings: Settings, jobs: Mapping[str, Job], args: argparse.Namespace) -> int:
    from worker.web import create_app
    from worker.web.serve import serve

    serve(settings, create_app(settings, jobs), args.host)  # refuses without STATUS_PASSWORD
    return EXIT_OK


COMMANDS: dict[str, Callable[[Settings, Mapping[str, Job], argparse.Namespace], int]] = {
    "serve": cmd_serve,
    "run": cmd_run,
    "trigger": cmd_trigger,
    "jobs": cmd_jobs,
    "runs": cmd_runs,
    "rejects": cmd_rejects,
    "migrate": cmd_migrate,
    "check": cmd_check,
    "web": cmd_web,
}


# -- helpers ----------------------------------------------------------------------------------
def _query(db: Database, fn: Callable[[Any], Any], empty: Any) -> Any:
    """Run a bookkeeping read; before the first `migrate` there is simply nothing to show."""
    return db.run(queries.once_migrated(fn, empty), budget=_cli_budget(db.settings))


def _cli_budget(settings: Settings) -> float:
    return min(CLI_BUDGET_SECONDS, settings.db_retry_timeout)


def _took(run: RunRecord) -> str:
    return "-" if run.duration is None else f"{run.duration.total_seconds():.1f}s"


def _table(header: list[str], rows: list[list[Any]]) -> None:
    for line in table(header, rows):
        _out(line)
