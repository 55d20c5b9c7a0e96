"""What runs when: cron expressions as crontab means them, and per-deployment overrides.

APScheduler 3 reads a crontab's day-of-week numbers with 0 = Monday (its docs own the
mistake); crontab means 0 = Sunday. We translate the field to day names so `0 3 * * 1` runs
on Mondays. Six fields put seconds first (handy for tests and demos).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger

_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
OFF = "off"


def env_name(job_name: str) -> str:
    return f"{job_name.upper()}_SCHEDULE"


def effective_schedule(job_name: str, declared: str | None, env: Mapping[str, str]) -> str | None:
    """The job's schedule after `<JOB>_SCHEDULE`; None when it has none or it is `off`."""
    override = env.get(env_name(job_name), "").strip()
    schedule = override or declared
    if schedule is None or schedule.lower() == OFF:
        return None
    return schedule


def cron_trigger(expr: str, timezone: str = "UTC") -> BaseTrigger:
    """A trigger for a 5-field crontab expression (or 6 fields, seconds first)."""
    fields = expr.split()
    if len(fields) == 5:
        fields = ["0", *fields]
    if len(fields) != 6:
        raise ValueError(f"expected 5 cron fields (or 6 with seconds), got {len(fields)}")
    second, minute, hour, day, month, day_of_week = fields
    common = {"second": second, "minute": minute, "hour": hour, "month": month}
    zone = ZoneInfo(timezone)
    days = _crontab_days(day_of_week)
    if day in ("*", "?") or days == "*":
        return CronTrigger(**common, day=day, day_of_week=days, timezone=zone)
    # crontab: with both day fields restricted, either one matching fires (APScheduler: both).
    return OrTrigger(
        [
            CronTrigger(**common, day=day, timezone=zone),
            CronTrigger(**common, day_of_week=days, timezone=zone),
        ]
    )


def next_fire(trigger: BaseTrigger, now: dt.datetime | None = None) -> dt.datetime | None:
    now = now or dt.datetime.now(dt.UTC)
    return trigger.get_next_fire_time(None, now)


def latest_fire(trigger: BaseTrigger, after: dt.datetime, now: dt.datetime) -> dt.datetime | None:
    """The most recent fire time in (after, now], or None: what a restart made us miss."""
    tick = dt.timedelta(microseconds=1)
    lookback = dt.timedelta(minutes=1)
    while True:
        start = max(after + tick, now - lookback)
        fire = trigger.get_next_fire_time(None, start)
        if fire is not None and fire <= now:
            while True:  # walk to the last one before now (few steps: the window is small)
                following = trigger.get_next_fire_time(fire, fire + tick)
                if following is None or following > now:
                    return fire
                fire = following
        if start <= after + tick:
            return None
        lookback *= 4


def misfire_grace(trigger: BaseTrigger, now: dt.datetime) -> int:
    """Seconds a fire time may be late and still run: half the job's period, 1 s to 1 h.

    Beyond it a fire time counts as missed; a restart's misses are caught up at start.
    """
    first = trigger.get_next_fire_time(None, now)
    if first is None:
        return 3600
    second = trigger.get_next_fire_time(first, first + dt.timedelta(microseconds=1))
    if second is None:
        return 3600
    return int(min(max((second - first).total_seconds() / 2, 1), 3600))


def _crontab_days(field: str) -> str:
    if field in ("*", "?"):
        return "*"
    days: set[int] = set()
    for part in field.lower().split(","):
        base, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if base in ("*", "?"):
            first, last = 0, 6
        elif "-" in base:
            first, last = (_day_number(x) for x in base.split("-", 1))
        else:
            first = _day_number(base)
            last = 6 if step_text else first
        if last < first or step < 1:
            raise ValueError(f"bad day-of-week range {part!r}")
        days.update(d % 7 for d in range(first, last + 1, step))
    return ",".join(_DAYS[d] for d in sorted(days))


def _day_number(token: str) -> int:
    if token in _DAYS:
        return _DAYS.index(token)
    if token.isdigit() and 0 <= int(token) <= 7:
        return int(token)  # 7 is Sunday too; reduced mod 7 by the caller
    raise ValueError(f"bad day of week {token!r}")
