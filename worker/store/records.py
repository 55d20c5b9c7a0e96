"""What the store's queries return: one record type per question, never a bare dict or tuple."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from worker.redact import MASK, is_sensitive_param

# What a run's recorded parameters hold beside its own (RunRequest.recorded_params): its window.
WINDOW_PARAMS = ("full_refresh", "since", "until")


def masked_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """A run's parameters as they are recorded and shown: the value of one named like a
    credential (`is_sensitive_param`: api_key, token, password…) replaced by `***`. The job
    alone receives the real value (ctx.params)."""
    return {name: MASK if is_sensitive_param(name) else value for name, value in params.items()}


@dataclass(frozen=True)
class RunRecord:
    """One row of the run history (`runs`)."""

    id: int
    job: str
    kind: str  # manual | schedule | catchup | queued | resume (the `trigger` column)
    status: str
    rows: int
    changed: int
    batches: int
    reconnects: int
    started_at: dt.datetime
    finished_at: dt.datetime | None
    error: str | None
    dyno: str | None
    rejected: int = 0
    recorded: dict[str, Any] = field(default_factory=dict)  # its params column, window included

    @property
    def duration(self) -> dt.timedelta | None:
        return None if self.finished_at is None else self.finished_at - self.started_at

    @property
    def params(self) -> dict[str, Any]:
        """The run's own parameters, a credential's value masked (a run recorded before they
        were masked at the source is masked here all the same)."""
        own = {k: v for k, v in self.recorded.items() if k not in WINDOW_PARAMS}
        return masked_params(own)

    @property
    def window(self) -> dict[str, Any]:
        """The run's window: `since` and `until` (ISO dates or None), `full_refresh`."""
        return {
            "since": self.recorded.get("since"),
            "until": self.recorded.get("until"),
            "full_refresh": bool(self.recorded.get("full_refresh")),
        }

    def as_json(self) -> dict[str, Any]:
        """The shape of `runs --json`, which operators' scripts read: the kind is `trigger`."""
        return {
            "id": self.id,
            "job": self.job,
            "trigger": self.kind,
            "status": self.status,
            "rows": self.rows,
            "changed": self.changed,
            "batches": self.batches,
            "reconnects": self.reconnects,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "error": self.error,
            "dyno": self.dyno,
            "rejected": self.rejected,
            "params": self.params,
            **self.window,
        }


@dataclass(frozen=True)
class LastRun:
    """A job's most recent run."""

    job: str
    id: int
    status: str
    started_at: dt.datetime
    finished_at: dt.datetime | None
    rows: int
    error: str | None
    dyno: str | None
    rejected: int = 0


@dataclass(frozen=True)
class RunningRun:
    """A run in progress: marked running, and its job's lock held by a live session."""

    job: str
    id: int
    dyno: str | None
    started_at: dt.datetime


@dataclass(frozen=True)
class QueuedRequest:
    """A request in `nightshift.triggers`: run this job with these parameters."""

    id: int
    params: dict[str, str]
    full_refresh: bool
    since: dt.date | None
    until: dt.date | None


@dataclass(frozen=True)
class StoredRequest:
    """A request in `nightshift.triggers` as stored, its values as text (`params` as JSON,
    dates as `nightshift.date_text` writes them): read so, no row can make the driver fail.
    `worker.run.request.parse_stored` makes a QueuedRequest of it, or refuses it."""

    id: int
    job: str
    params: str
    full_refresh: bool
    since: str | None
    until: str | None
    job_retired: bool = False  # no deployed code declares its job any more


@dataclass(frozen=True)
class CutShortRun:
    """A job's latest run, cut short by a shutdown or a crash, that nobody resumed yet."""

    job: str
    id: int
    params: str  # as recorded, JSON text (`worker.run.request.resume_request` reads it)


@dataclass(frozen=True)
class HeldProgress:
    """What the database holds of a run's progress."""

    rows: int
    changed: int
    batches: int
    rejected: int


@dataclass(frozen=True)
class Reject:
    """A row a table refused, kept in `nightshift.rejects`."""

    id: int
    job: str
    run_id: int | None
    key: str | None  # JSON text
    row: str  # JSON text
    error: str
    rejected_at: dt.datetime
    held: str | None = None  # JSON text: the table's row for the key when it was refused

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "job": self.job,
            "run_id": self.run_id,
            "key": None if self.key is None else json.loads(self.key),
            "row": json.loads(self.row),
            "error": self.error,
            "rejected_at": self.rejected_at.isoformat(),
        }


@dataclass(frozen=True)
class ServerFacts:
    server_version: str
    ssl: bool
    in_recovery: bool
    read_only: bool
    database: str


@dataclass(frozen=True)
class Enqueued:
    """What a request to run became: a new pending request, or one it joined (`joined`): the
    identical request still pending, which the same run will serve."""

    id: int
    requested_at: dt.datetime
    joined: bool


def utc_text(value: dt.datetime | None) -> str:
    """A moment as operators read it (CLI and status page): UTC, to the second; "-" for none."""
    if value is None:
        return "-"
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
