"""Why a run did not start, or why it failed.

`Skipped`: nothing was recorded, `str()` says why. `RunError`: the run failed; its class names
the cause (`cause`, the short word that starts the run's recorded error: "source: …").
"""

from __future__ import annotations

from worker.errors import NightshiftError


class Skipped(NightshiftError):
    """The run was not started, and nothing was recorded: `str()` says why."""


class JobBusy(Skipped):
    """The job is running elsewhere."""


class AlreadyDone(Skipped):
    """Another process already did what this run was for."""


class RequestRefused(Skipped):
    """A queued request, or a run cut short, that no run can serve as it was asked: `str()`
    says why, in one line. Nothing was started; the worker settles it once, as a run with the
    status `refused` (worker.run.refusals)."""


class RunError(NightshiftError):
    """The run failed."""

    cause = "run"

    def describe(self) -> str:
        """The run's recorded error: its cause, then what happened."""
        return f"{self.cause}: {self}"


class JobCodeFailed(RunError):
    """The job's own code raised, or yielded something that is not rows."""

    cause = "job"


class SourceFailed(RunError):
    """The job's source answered something it cannot use."""

    cause = "source"


class BadRow(RunError):
    """A row does not fit the job's table."""

    cause = "bad row"


class LoadFailed(RunError):
    """The database refused a batch."""

    cause = "load"


class DatabaseLost(RunError):
    """The database could not be reached for long enough, or failed otherwise."""

    cause = "database"


class CommitsLost(DatabaseLost):
    """The database no longer holds batches this run saw commit (an asynchronous failover).

    `held`: what it holds of the run's progress (worker.store.records.HeldProgress)."""

    def __init__(self, message: str, held: object = None) -> None:
        self.held = held
        super().__init__(message)


class LockLost(RunError):
    """The job's lock went to another process while this run was reconnecting."""

    cause = "lock"


class TooManyRejected(RunError):
    """More rows were refused than the job allows (`max_rejected`)."""

    def __init__(self, message: str, cause: str) -> None:
        self.cause = cause  # that of the refusals: "load" (the database), "bad row" (our checks)
        super().__init__(message)


class BadState(RunError):
    """The job's saved state cannot be used (a cursor an older version saved, say)."""

    cause = "state"


class Unexpected(RunError):
    """Something the engine did not foresee went wrong; the run fails cleanly all the same."""

    cause = "internal error"


class Unconvertible(ValueError):
    """A cursor or version value that does not fit its column's type; `str()` names the value
    and the type. The row is refused (quarantined), not the run."""
