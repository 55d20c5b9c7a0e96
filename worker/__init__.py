"""Nightshift: a scheduled ETL worker for Heroku Postgres.

Job authors need only this: the `job` decorator, the `Context` a job receives, `SourceError`
for a source that answers something unusable, the paginators `ctx.paginate` takes and the
credentials any request of `ctx.http` takes as `auth=`.
"""

from worker.errors import SourceError
from worker.registry import job
from worker.run.context import Context
from worker.source.auth import ApiKey, Basic, Bearer
from worker.source.paginators import Cursor, LinkHeader, NextUrl, Offset, PageNumber, Paginator

__all__ = [
    "ApiKey",
    "Basic",
    "Bearer",
    "Context",
    "Cursor",
    "LinkHeader",
    "NextUrl",
    "Offset",
    "PageNumber",
    "Paginator",
    "SourceError",
    "job",
]
