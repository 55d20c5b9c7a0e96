"""`run JOB --dry-run`: extract and check a job's rows without writing anything.

The job runs as it would next (its saved cursor, its parameters); each row is checked against
the declaration (key, columns, cursor and version types), and each batch is sent to the
database in a transaction that is rolled back — so the table's own verdict (types, formats,
ranges, constraints) is in the report, and nothing is kept: no row, no state, no run record.
This is how a job author debugs a new job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from config import Settings
from worker.database import Database
from worker.registry import Job
from worker.run.batch import admit
from worker.run.context import Context
from worker.run.loader import Checked, Loader, Refusal
from worker.run.request import RunRequest
from worker.run.rows import job_rows
from worker.run.state import StateTracker
from worker.store import queries
from worker.store.migrate import ensure_table

if TYPE_CHECKING:
    from worker.service.shutdown import Shutdown

# Problems the report shows (all are counted).
SHOWN_PROBLEMS = 10


@dataclass
class DryRunReport:
    job: str
    key: tuple[str, ...]
    yielded: int = 0  # rows the job yielded
    would_write: int = 0  # after repeated keys are reduced and refused rows set apart
    would_change: int = 0  # of those, new or different from the table's
    refused: int = 0
    problems: list[Refusal] = field(default_factory=list)
    cursor_from: Any = None
    cursor_to: Any = None

    def lines(self) -> list[str]:
        lines = [
            f"dry run of {self.job}: nothing was written",
            f"rows yielded:  {self.yielded}",
            f"would write:   {self.would_write} ({self.would_change} new or changed)",
            f"refused:       {self.refused}",
        ]
        if self.cursor_to is not None or self.cursor_from is not None:
            lines.append(f"cursor:        {_show(self.cursor_from)} -> {_show(self.cursor_to)}")
        if self.problems:
            lines.append(f"first problems ({len(self.problems)} of {self.refused}):")
            lines += [f"  {_key(p.row, self.key)}: {p.error}" for p in self.problems]
        return lines


class DryRun:
    def __init__(
        self, settings: Settings, job: Job, request: RunRequest, shutdown: Shutdown
    ) -> None:
        self.settings = settings
        self.job = job
        self.request = request
        self.shutdown = shutdown
        self.loader = Loader(job)
        self.report = DryRunReport(job.name, job.key)

    def execute(self) -> DryRunReport:
        """Raises RunError (one line) when the job itself fails."""
        name = f"nightshift:{self.job.name}@{self.settings.dyno}:dry-run"
        request = self.request
        with Database(self.settings, name, stop=self.shutdown.event) as db:
            state = db.run(self._saved_state, commit=False)
            window = request.since is not None or request.until is not None
            tracker = StateTracker(self.job, state, request.full_refresh, window=window)
            self.report.cursor_from = tracker.cursor
            ctx = Context.for_run(
                self.settings, self.job.name, 0, request, tracker, self.shutdown.check
            )
            batch: list[Checked] = []
            with ctx.http:
                for row in job_rows(self.job, ctx, self.shutdown):
                    self.report.yielded += 1
                    checked = admit(self.loader, tracker, row)
                    if isinstance(checked, Refusal):
                        self._refused([checked])
                        continue
                    batch.append(checked)
                    if len(batch) >= self.settings.batch_size:
                        self._try(db, batch)
                        batch = []
                self._try(db, batch)
            self.report.cursor_to = tracker.reached if tracker.saving else None
        return self.report

    def _saved_state(self, cur: Any) -> dict[str, Any]:
        return queries.load_state(cur, self.job.name) if queries.bookkeeping_exists(cur) else {}

    def _try(self, db: Database, batch: list[Checked]) -> None:
        if not batch:
            return

        def attempt(cur: Any) -> Any:
            ensure_table(cur, self.job)  # rolled back with the rest
            return self.loader.write(cur, batch, isolate=True)

        written = db.run(attempt, commit=False)
        self.report.would_write += written.rows
        self.report.would_change += written.changed
        self._refused(written.refused)

    def _refused(self, refusals: list[Refusal]) -> None:
        self.report.refused += len(refusals)
        room = SHOWN_PROBLEMS - len(self.report.problems)
        self.report.problems += refusals[: max(room, 0)]


def _show(value: Any) -> str:
    if value is None:
        return "none"
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _key(row: Any, key: tuple[str, ...]) -> str:
    if isinstance(row, dict):
        return ", ".join(f"{name}={row.get(name)!r}" for name in key)
    return repr(row)[:60]
