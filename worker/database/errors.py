"""The database layer's errors: what `Database.run` raises when the database cannot serve us.

Driver errors are classified in `worker.database.classify` and wrapped here `from` the original;
no layer above sees a psycopg2 exception.
"""

from __future__ import annotations

import psycopg2

from worker.errors import NightshiftError


class DatabaseError(NightshiftError):
    """The database failed."""


class DatabaseUnavailable(DatabaseError):
    """The database could not be reached."""


class ResolverError(DatabaseUnavailable):
    """The database URL could not be resolved. `fatal`: retrying cannot help (a refused token)."""

    def __init__(self, message: str | None = None, fatal: bool = False) -> None:
        self.fatal = fatal
        super().__init__(message)


class RowsRefused(DatabaseError):
    """The database (or the driver, adapting a value) refused rows of a statement: a data,
    format, range or constraint error, not a fault. The transaction can go on."""


class StandbyError(psycopg2.OperationalError):
    """Connected to a read-only standby (pg_is_in_recovery).

    A driver error, so that it takes the same path as every other connection failure; the
    classifier recognises it by its type."""
