"""The exception tree. A docstring is the default message; `str()` is one line, secret-free.

Transient errors may be retried; fatal ones end the run. Driver errors are classified in
exactly one place (`worker.db`), and wrapped here `from` the original.
"""

from __future__ import annotations

from worker.redact import redact


class NightshiftError(Exception):
    """Nightshift failed."""

    def __init__(self, message: str | None = None) -> None:
        text = message or (self.__doc__ or "").strip()
        super().__init__(redact(" ".join(text.split())))


class UnknownJob(NightshiftError):
    """No such job."""


class Skipped(NightshiftError):
    """The run was not started, and nothing was recorded: `str()` says why."""


class JobBusy(Skipped):
    """The job is running elsewhere."""


class AlreadyDone(Skipped):
    """Another process already did what this run was for."""


class DatabaseError(NightshiftError):
    """The database failed."""


class DatabaseUnavailable(DatabaseError):
    """The database could not be reached."""


class ResolverError(DatabaseUnavailable):
    """The database URL could not be resolved. `fatal`: retrying cannot help (a refused token)."""

    def __init__(self, message: str | None = None, fatal: bool = False) -> None:
        self.fatal = fatal
        super().__init__(message)


class JobFailed(NightshiftError):
    """The run failed. `cause` is a short kind (source, load, job, database)."""

    def __init__(self, job: str, cause: str, detail: str) -> None:
        self.job = job
        self.cause = cause
        super().__init__(f"{cause}: {detail}")


class SourceError(NightshiftError):
    """The job's HTTP source answered something it cannot use."""


class ShutdownRequested(BaseException):
    """A shutdown was requested. BaseException, so a job's `except Exception` cannot swallow it."""
