"""The rows a job yields, one by one: pages flattened, its failures made one-line errors."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from worker.errors import SourceError
from worker.logs import get_logger
from worker.registry import Job
from worker.run.context import Context
from worker.run.errors import JobCodeFailed, SourceFailed

if TYPE_CHECKING:  # the process's stop flag, set by signals (worker.service.shutdown)
    from worker.service.shutdown import Shutdown

log = get_logger("nightshift.run")


def job_rows(job: Job, ctx: Context, shutdown: Shutdown) -> Iterator[Any]:
    """Drive the job's generator; a dict is a row, a list or tuple a page of rows."""
    generator = job.function(ctx)
    interruptible = shutdown.interruptible()  # checks for a shutdown as it is entered
    try:
        while True:
            try:
                with interruptible:
                    item = next(generator)
            except StopIteration:
                return
            except SourceError as exc:
                raise SourceFailed(str(exc)) from exc
            except Exception as exc:
                log.debug("job_raised", exc_info=exc)
                raise JobCodeFailed(f"{type(exc).__name__}: {exc}") from exc
            if type(item) is dict or isinstance(item, Mapping):
                yield item
            elif isinstance(item, list | tuple):
                yield from item
            else:
                raise JobCodeFailed(f"yielded a {type(item).__name__}; yield dicts or lists")
    finally:
        generator.close()
