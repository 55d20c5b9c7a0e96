"""What a run is asked to do: its kind and parameters, checked once, where they enter.

Parameters reach a job as `ctx.params` (strings), `ctx.full_refresh` (ignore the saved state)
and `ctx.since` / `ctx.until` (a backfill window of ISO dates, either may be open).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from config import ConfigError
from worker.redact import MASK, is_sensitive_param, register_secret
from worker.store.records import WINDOW_PARAMS, QueuedRequest, masked_params

# Names the run history uses next to a run's own parameters.
RESERVED = WINDOW_PARAMS
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,62}$")


# What started a run, its kind (the `trigger` column of `nightshift.runs`, for operators):
MANUAL = "manual"  # `python -m worker run`
SCHEDULE = "schedule"  # a fire time of the job's schedule
CATCHUP = "catchup"  # a fire time missed during a restart, run at start
QUEUED = "queued"  # a request in the queue (`trigger`, or an INSERT into nightshift.triggers)
RESUME = "resume"  # a scheduled, catch-up or queued run cut short, run again


@dataclass(frozen=True)
class RunRequest:
    kind: str = MANUAL
    params: Mapping[str, str] = field(default_factory=dict)
    full_refresh: bool = False
    since: dt.date | None = None
    until: dt.date | None = None
    fire_time: dt.datetime | None = None  # the schedule's fire time this run serves
    request_id: int | None = None  # the queued request it claimed
    resumes: int | None = None  # the run cut short that this one resumes

    def __post_init__(self) -> None:
        # A credential-named parameter is a secret from the moment a request carries it, as
        # `ctx.secret` makes one: masked in any text it reaches (an error, a log line, an alert).
        for name, value in self.params.items():
            if is_sensitive_param(name):
                register_secret(value)

    @classmethod
    def resuming(cls, run_id: int, recorded: Mapping[str, Any]) -> RunRequest:
        """A request that resumes run `run_id`, with the parameters it recorded.

        A credential's value is not recorded (`recorded_params`), so a run that had one cannot
        be resumed as it was asked: the job would get `***` for a password, fail at its source
        at best, or send the mask upstream as a credential. Such a run is not offered for
        resuming (`runs_to_resume` passes it over: it stays interrupted or abandoned, for an
        operator to queue again with the value); asked anyway, this refuses it, naming the
        parameter, rather than guess."""
        masked = sorted(k for k, v in recorded.items() if is_sensitive_param(k) and v == MASK)
        if masked:
            names = ", ".join(masked)
            raise ConfigError(
                f"run {run_id} cannot be resumed: its parameter(s) {names} held a credential,"
                " which the run history does not keep; queue the run again with the value"
            )
        params = {k: str(v) for k, v in recorded.items() if k not in RESERVED}
        return cls(
            kind=RESUME,
            params=params,
            full_refresh=bool(recorded.get("full_refresh")),
            since=parse_date("since", recorded.get("since")),
            until=parse_date("until", recorded.get("until")),
            resumes=run_id,
        )

    @property
    def queued(self) -> bool:
        """Claim the job's oldest queued request when the run starts."""
        return self.kind == QUEUED

    def with_queued(self, queued: QueuedRequest) -> RunRequest:
        """This request, carrying the parameters of the queued request it claimed."""
        return replace(
            self,
            params=queued.params,
            full_refresh=queued.full_refresh,
            since=queued.since,
            until=queued.until,
            request_id=queued.id,
        )

    def recorded_params(self) -> dict[str, Any]:
        """What the run's history row keeps of its parameters (and `job_started` logs): a
        credential's value masked (the job alone gets it, in ctx.params)."""
        recorded: dict[str, Any] = masked_params(self.params)
        if self.full_refresh:
            recorded["full_refresh"] = True
        if self.since:
            recorded["since"] = self.since.isoformat()
        if self.until:
            recorded["until"] = self.until.isoformat()
        return recorded


def parse_params(pairs: list[str]) -> dict[str, str]:
    """`KEY=VALUE` strings → a dict, refusing anything else with a clear message."""
    params: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not _KEY.match(key):
            raise ConfigError(f"--param takes KEY=VALUE, got {pair!r}")
        if key in RESERVED:
            raise ConfigError(f"--param {key} is reserved; use --{key.replace('_', '-')}")
        params[key] = value
    return params


def parse_date(name: str, value: str | None) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"{name} takes an ISO date (YYYY-MM-DD), got {value!r}") from None


def window(since: str | None, until: str | None) -> tuple[dt.date | None, dt.date | None]:
    start, end = parse_date("--since", since), parse_date("--until", until)
    if start and end and start > end:
        raise ConfigError(f"--since {start} is after --until {end}")
    return start, end
