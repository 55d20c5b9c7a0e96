"""The shared exception root, and the errors a job author or an operator meets.

A docstring is the default message; `str()` is one line, secret-free. Each layer keeps its own
errors beside it: `worker.database.errors` (the session could not serve us) and
`worker.run.errors` (a run failed or was skipped). Nobody recognises an error by its text.
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


class InvalidJob(NightshiftError):
    """A job declaration is invalid."""


class SourceError(NightshiftError):
    """The job's HTTP source answered something it cannot use."""


class MissingSecret(NightshiftError):
    """A secret the job asked for is not in the environment."""


class ShutdownRequested(BaseException):
    """A shutdown was requested. BaseException, so a job's `except Exception` cannot swallow it."""
