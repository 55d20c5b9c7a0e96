"""What a run is asked to do: its kind and parameters, checked once, where they enter.

Parameters reach a job as `ctx.params` (strings), `ctx.full_refresh` (ignore the saved state)
and `ctx.since` / `ctx.until` (a backfill window of ISO dates, either may be open).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from config import ConfigError
from worker.redact import MASK, is_sensitive_param, register_secret
from worker.run.errors import RequestRefused
from worker.store.records import (
    WINDOW_PARAMS,
    CutShortRun,
    QueuedRequest,
    StoredRequest,
    masked_params,
)

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
        at best, or send the mask upstream as a credential. This refuses it, naming the
        parameter, rather than guess (`resume_request` settles it as a refused resume, for an
        operator to queue again with the value)."""
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


# -- requests as stored: read back, checked, or refused --------------------------------------------
# The dates a run can take: those a Python date holds (and nightshift.check_trigger admits).
DATE_RANGE = "0001-01-01 to 9999-12-31"
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# A refused value is shown in its reason up to this many characters: a line, not a dump.
SHOWN = 40
_JSON_KINDS = {dict: "a JSON object", list: "a JSON array"}


def parse_stored(stored: StoredRequest) -> QueuedRequest:
    """A request as `nightshift.triggers` holds it (read as text), checked: RequestRefused,
    saying why in one line, when no run can take it (a request queued before migration 0008,
    or by a role that bypassed its checks)."""
    params = _own_params(_json("params", stored.params))
    since, until = _window(_date("since", stored.since), _date("until", stored.until))
    return QueuedRequest(stored.id, params, stored.full_refresh, since, until)


def resume_request(cut_short: CutShortRun) -> RunRequest:
    """The request that resumes `cut_short` with the parameters it recorded, checked as a
    queued request is: RequestRefused, saying why in one line, when no run can take them."""
    recorded = _json("params", cut_short.params)
    if not isinstance(recorded, dict):
        raise RequestRefused(f"its params are {_shown(recorded)}, not a JSON object")
    _own_params({k: v for k, v in recorded.items() if k not in RESERVED})
    if not isinstance(recorded.get("full_refresh", False), bool):
        raise RequestRefused(f"full_refresh {_shown(recorded['full_refresh'])} is not a boolean")
    _window(_date("since", recorded.get("since")), _date("until", recorded.get("until")))
    try:
        return RunRequest.resuming(cut_short.id, recorded)
    except ConfigError as exc:
        raise RequestRefused(str(exc)) from None


def cleared(params: Mapping[str, Any]) -> dict[str, Any] | None:
    """A claimed request's parameters as the queue keeps them: a credential's value (a name
    `is_sensitive_param` knows) cleared to `***`, as the run alone needs it. None when no
    parameter is named so (nothing to change)."""
    if not any(is_sensitive_param(name) for name in params):
        return None
    return masked_params(params)


def _json(name: str, text: str) -> Any:
    try:
        return json.loads(text)
    except RecursionError:
        raise RequestRefused(f"{name} are nested too deeply to read") from None
    except ValueError as exc:  # a number beyond int's digit limit, say
        raise RequestRefused(f"{name} cannot be read: {_shown(str(exc))}") from None


def _own_params(params: Any) -> dict[str, str]:
    if not isinstance(params, dict):
        # Its kind alone, as the INSERT's own check says it: the value may be a credential.
        raise RequestRefused(f"params must be a JSON object of strings, got {_kind(params)}")
    for name, value in params.items():
        if not isinstance(value, str):
            # A credential's value is never shown, whatever its type: the reason is stored.
            shown = MASK if is_sensitive_param(str(name)) else _shown(value)
            raise RequestRefused(
                f"params must be a JSON object of strings: {_shown(name)} is {shown}"
            )
    reserved = [name for name in RESERVED if name in params]
    if reserved:
        raise RequestRefused(f"params may not be named {', '.join(reserved)}: use the columns")
    return params


def _date(name: str, value: Any) -> dt.date | None:
    if value is None:
        return None
    if isinstance(value, str) and _ISO_DATE.fullmatch(value):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:  # year 0, month 13, February 30
            pass
    raise RequestRefused(f"{name} {_shown(value)} is not a date ({DATE_RANGE})")


def _window(since: dt.date | None, until: dt.date | None) -> tuple[dt.date | None, dt.date | None]:
    if since is not None and until is not None and since > until:
        raise RequestRefused(f"since '{since}' is after until '{until}'")
    return since, until


def _kind(value: Any) -> str:
    """A JSON value's kind, as jsonb_typeof names it: "a JSON string", "a JSON null"…"""
    if value is None:
        return "a JSON null"
    if isinstance(value, bool):
        return "a JSON boolean"
    if isinstance(value, int | float):
        return "a JSON number"
    if isinstance(value, str):
        return "a JSON string"
    return _JSON_KINDS[type(value)]


def _shown(value: Any) -> str:
    """A value in a reason: a string quoted and escaped (one line), cut at SHOWN characters;
    a number, boolean or null as JSON writes it; an object or array by its kind alone."""
    if isinstance(value, str):
        return repr(value if len(value) <= SHOWN else value[: SHOWN - 1] + "…")
    if isinstance(value, dict | list):
        return _JSON_KINDS[type(value)]
    try:
        text = json.dumps(value)
    except ValueError:  # an int too long to write
        return "a JSON number"
    return text if len(text) <= SHOWN else "a JSON number"
