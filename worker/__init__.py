"""Nightshift: a scheduled ETL worker for Heroku Postgres.

Job authors need only this: the `job` decorator, the `Context` a job receives, and
`SourceError` for a source that answers something unusable.
"""

from worker.errors import SourceError
from worker.registry import job
from worker.run.context import Context

__all__ = ["Context", "SourceError", "job"]
