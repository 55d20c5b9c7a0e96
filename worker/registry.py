"""The job API: the `@job` decorator, the `Job` declaration, and discovery of `jobs/`.

A job is a generator function that takes a `Context` and yields rows (dicts) or pages of rows
(lists of dicts). It never touches the database or the scheduler: the engine drives it.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.base import BaseTrigger

from worker.errors import InvalidJob, UnknownJob
from worker.run.values import ORDERED_TYPES, converter
from worker.service.cron import cron_trigger, effective_schedule

Row = Mapping[str, Any]
JobFunction = Callable[..., Iterator[Row | list[Row]]]

MODES = ("upsert", "append")
# Refused rows a run may quarantine before it fails instead.
DEFAULT_MAX_REJECTED = 100
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# A column type is SQL the job author wrote; keep it to what a type can look like.
_TYPE = re.compile(r"^[a-z][a-z0-9 _]*(\(\s*\d+(\s*,\s*\d+)?\s*\))?(\[\])?$", re.IGNORECASE)


@dataclass(frozen=True)
class Job:
    """What a job declares: its name, schedule and target table."""

    name: str
    function: JobFunction = field(repr=False, compare=False)
    table: str
    columns: Mapping[str, str]
    key: tuple[str, ...]
    schedule: str | None = None
    timezone: str = "UTC"
    mode: str = "upsert"
    cursor: str | None = None
    schema: str = "public"
    version: str | None = None
    max_rejected: int = DEFAULT_MAX_REJECTED

    def rejects_allowed(self, env: Mapping[str, str] | None = None) -> int:
        """`max_rejected` after `<JOB>_MAX_REJECTED`: refused rows a run may quarantine."""
        env = os.environ if env is None else env
        override = env.get(f"{self.name.upper()}_MAX_REJECTED", "").strip()
        if not override:
            return self.max_rejected
        if not override.isdigit():
            raise InvalidJob(
                f"job {self.name!r}: {self.name.upper()}_MAX_REJECTED must be a whole number"
                f" (0 fails the run on the first refused row), got {override!r}"
            )
        return int(override)

    def schedule_in_force(self, env: Mapping[str, str] | None = None) -> str | None:
        """The cron expression after `<JOB>_SCHEDULE`, or None when the job has none (or `off`)."""
        return effective_schedule(self.name, self.schedule, os.environ if env is None else env)

    def cron_trigger(self, env: Mapping[str, str] | None = None) -> BaseTrigger | None:
        """The cron trigger of the schedule in force, or None."""
        expr = self.schedule_in_force(env)
        return None if expr is None else cron_trigger(expr, self.timezone)

    def validate(self) -> None:
        where = f"job {self.name!r}"
        for what, name in [("job name", self.name), ("table", self.table), ("schema", self.schema)]:
            if not _NAME.match(name):
                raise InvalidJob(f"{where}: {what} {name!r} must match {_NAME.pattern}")
        if not self.columns:
            raise InvalidJob(f"{where}: declare the table's columns")
        for column, sql_type in self.columns.items():
            if not _NAME.match(column):
                raise InvalidJob(f"{where}: column {column!r} must match {_NAME.pattern}")
            if not _TYPE.match(sql_type.strip()):
                raise InvalidJob(f"{where}: column {column!r} has an odd type {sql_type!r}")
        if self.mode not in MODES:
            raise InvalidJob(f"{where}: mode must be one of {', '.join(MODES)}")
        if not self.key:
            # Without a key a replayed batch would write its rows twice.
            raise InvalidJob(f"{where}: declare a key; every load must be safe to replay")
        ordered = [c for c in (self.cursor, self.version) if c]
        for column in (*self.key, *ordered):
            if column not in self.columns:
                raise InvalidJob(f"{where}: {column!r} is not a declared column")
        for column in ordered:
            if converter(self.columns[column]) is None:
                raise InvalidJob(
                    f"{where}: {column!r} is a cursor or a version, so its type must be one of"
                    f" {ORDERED_TYPES}; it is {self.columns[column]!r}"
                )
        if self.version and (self.version in self.key or self.mode != "upsert"):
            raise InvalidJob(f"{where}: a version column must not be in the key, and needs upsert")
        if not isinstance(self.max_rejected, int) or self.max_rejected < 0:
            raise InvalidJob(f"{where}: max_rejected must be a whole number (0: fail at once)")
        self.rejects_allowed()
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidJob(f"{where}: unknown timezone {self.timezone!r}") from None
        for expr in (self.schedule, effective_schedule(self.name, None, os.environ)):
            if expr is None:
                continue
            try:
                cron_trigger(expr, self.timezone)
            except ValueError as exc:
                raise InvalidJob(f"{where}: bad schedule {expr!r}: {exc}") from None


def job(
    *,
    table: str,
    columns: Mapping[str, str],
    key: str | tuple[str, ...] | list[str],
    schedule: str | None = None,
    timezone: str = "UTC",
    mode: str = "upsert",
    cursor: str | None = None,
    version: str | None = None,
    max_rejected: int = DEFAULT_MAX_REJECTED,
    name: str | None = None,
    schema: str = "public",
) -> Callable[[JobFunction], JobFunction]:
    """Declare a job.

    table/columns/key: the target table (created by `migrate`), its columns as
        ``{name: SQL type}``, and the key rows are upserted on.
    schedule/timezone: a five-field cron expression and an IANA timezone (default UTC).
    mode: "upsert" (a row with a known key replaces it) or "append" (a known key is kept).
    cursor: a column whose greatest loaded value is saved with each batch and handed to the
        next run as `ctx.cursor` (a watermark).
    version: a column that orders revisions of a row: a stored row is replaced only by one
        whose version is greater or equal, and within a batch the greatest version wins.
    max_rejected: rows the table refuses are quarantined in `nightshift.rejects`, up to this
        many per run (then the run fails); 0 fails the run on the first refused row.
    """

    def register(function: JobFunction) -> JobFunction:
        declared = Job(
            name=name or function.__name__,
            function=function,
            table=table,
            columns=dict(columns),
            key=(key,) if isinstance(key, str) else tuple(key),
            schedule=schedule,
            timezone=timezone,
            mode=mode,
            cursor=cursor,
            schema=schema,
            version=version,
            max_rejected=max_rejected,
        )
        declared.validate()
        function.__nightshift_job__ = declared  # type: ignore[attr-defined]
        return function

    return register


def discover(package: str = "jobs") -> dict[str, Job]:
    """Import every module of `package` and return its jobs by name."""
    found: dict[str, Job] = {}
    pkg = importlib.import_module(package)
    for module_info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package}.{module_info.name}")
        for value in vars(module).values():
            declared = getattr(value, "__nightshift_job__", None)
            if not isinstance(declared, Job):
                continue
            if declared.name in found and found[declared.name] is not declared:
                raise InvalidJob(f"two jobs are named {declared.name!r}")
            found[declared.name] = declared
    return found


def lookup(jobs: Mapping[str, Job], name: str) -> Job:
    """The job called `name`, or UnknownJob listing the known ones."""
    if name not in jobs:
        known = ", ".join(sorted(jobs)) or "none"
        raise UnknownJob(f"unknown job {name!r}; known jobs: {known}")
    return jobs[name]
