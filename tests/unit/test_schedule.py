"""Cron expressions mean what crontab means, in the job's timezone, unless the env overrides."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from worker.service.cron import (
    cron_trigger,
    effective_schedule,
    env_name,
    latest_fire,
    misfire_grace,
)

UTC = dt.UTC
FRIDAY_NOON = dt.datetime(2024, 5, 3, 12, 0, tzinfo=UTC)  # Friday 3 May 2024


def next_fire(expr: str, now: dt.datetime, timezone: str = "UTC") -> dt.datetime | None:
    return cron_trigger(expr, timezone).get_next_fire_time(None, now)


def next_fires(expr: str, now: dt.datetime, count: int, timezone: str = "UTC") -> list[dt.datetime]:
    """The next `count` fire times after `now`, each found from one second after the last."""
    trigger = cron_trigger(expr, timezone)
    fires = []
    for _ in range(count):
        fire = trigger.get_next_fire_time(None, now)
        assert fire is not None
        fires.append(fire)
        now = fire + dt.timedelta(seconds=1)
    return fires


def may(day: int, hour: int = 3) -> dt.datetime:
    return dt.datetime(2024, 5, day, hour, 0, tzinfo=UTC)


# -- day of week: crontab's numbers, not APScheduler's -----------------------------------------


def test_day_of_week_1_is_monday_so_the_next_fire_after_a_friday_is_monday_0300():
    assert next_fire("0 3 * * 1", FRIDAY_NOON) == may(6)


def test_day_of_week_fires_at_0300_on_monday_in_the_jobs_timezone():
    fire = next_fire("0 3 * * 1", FRIDAY_NOON, "America/New_York")

    assert fire == dt.datetime(2024, 5, 6, 3, 0, tzinfo=ZoneInfo("America/New_York"))
    assert fire.utcoffset() == dt.timedelta(hours=-4)
    assert fire.astimezone(UTC) == dt.datetime(2024, 5, 6, 7, 0, tzinfo=UTC)


@pytest.mark.parametrize("sunday", ["0", "7", "sun", "SUN"])
def test_day_of_week_0_and_7_both_mean_sunday(sunday):
    assert next_fires(f"0 3 * * {sunday}", FRIDAY_NOON, 2) == [may(5), may(12)]


@pytest.mark.parametrize("weekdays", ["1-5", "mon-fri", "Mon-Fri", "1,2,3,4,5"])
def test_a_weekday_range_fires_monday_to_friday_and_skips_the_weekend(weekdays):
    assert next_fires(f"0 3 * * {weekdays}", FRIDAY_NOON, 6) == [
        may(6), may(7), may(8), may(9), may(10), may(13),
    ]  # fmt: skip


def test_a_list_0_6_fires_on_saturday_and_sunday_only():
    assert next_fires("0 3 * * 0,6", FRIDAY_NOON, 4) == [may(4), may(5), may(11), may(12)]


def test_a_step_of_2_fires_on_sunday_tuesday_thursday_and_saturday():
    assert next_fires("0 3 * * */2", FRIDAY_NOON, 5) == [
        may(4), may(5), may(7), may(9), may(11),
    ]  # fmt: skip


def test_a_range_ending_in_7_includes_sunday():
    assert next_fires("0 3 * * 5-7", FRIDAY_NOON, 3) == [may(4), may(5), may(10)]


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("8", "bad day of week '8'"),
        ("funday", "bad day of week 'funday'"),
        ("fri-mon", "bad day-of-week range 'fri-mon'"),
        ("*/0", "bad day-of-week range '*/0'"),
    ],
)
def test_an_invalid_day_of_week_raises_value_error_naming_it(field, message):
    with pytest.raises(ValueError) as raised:
        cron_trigger(f"0 3 * * {field}")

    assert str(raised.value) == message


def test_with_day_of_month_and_day_of_week_both_set_either_one_matching_fires():
    # crontab(5): "0 3 13 * 5" runs on the 13th of the month AND on every Friday.
    assert next_fire("0 3 13 * 5", FRIDAY_NOON) == may(10)


# -- field counts ------------------------------------------------------------------------------


def test_six_fields_put_seconds_first():
    assert next_fire("30 0 3 * * 1", FRIDAY_NOON) == dt.datetime(2024, 5, 6, 3, 0, 30, tzinfo=UTC)


def test_six_fields_can_fire_every_ten_seconds():
    now = dt.datetime(2024, 5, 3, 12, 0, 5, tzinfo=UTC)

    assert next_fires("*/10 * * * * *", now, 3) == [
        dt.datetime(2024, 5, 3, 12, 0, 10, tzinfo=UTC),
        dt.datetime(2024, 5, 3, 12, 0, 20, tzinfo=UTC),
        dt.datetime(2024, 5, 3, 12, 0, 30, tzinfo=UTC),
    ]


def test_five_fields_fire_on_the_whole_minute():
    now = dt.datetime(2024, 5, 3, 12, 7, 41, tzinfo=UTC)

    assert next_fires("*/15 * * * *", now, 2) == [
        dt.datetime(2024, 5, 3, 12, 15, tzinfo=UTC),
        dt.datetime(2024, 5, 3, 12, 30, tzinfo=UTC),
    ]


@pytest.mark.parametrize(
    ("expr", "count"),
    [("", 0), ("0 3 * *", 4), ("0 0 3 * * 1 2024", 7)],
)
def test_a_wrong_number_of_fields_raises_value_error_with_the_count(expr, count):
    with pytest.raises(ValueError) as raised:
        cron_trigger(expr)

    assert str(raised.value) == f"expected 5 cron fields (or 6 with seconds), got {count}"


# -- timezones across daylight-saving changes --------------------------------------------------


def test_0300_paris_is_0200_utc_in_winter_and_0100_utc_after_clocks_go_forward():
    now = dt.datetime(2024, 3, 29, 12, 0, tzinfo=UTC)  # DST starts Sunday 31 March 2024

    assert next_fires("0 3 * * *", now, 3, "Europe/Paris") == [
        dt.datetime(2024, 3, 30, 2, 0, tzinfo=UTC),
        dt.datetime(2024, 3, 31, 1, 0, tzinfo=UTC),
        dt.datetime(2024, 4, 1, 1, 0, tzinfo=UTC),
    ]


def test_0300_paris_is_0100_utc_in_summer_and_0200_utc_after_clocks_go_back():
    now = dt.datetime(2024, 10, 25, 12, 0, tzinfo=UTC)  # DST ends Sunday 27 October 2024

    fires = next_fires("0 3 * * *", now, 3, "Europe/Paris")

    assert fires == [
        dt.datetime(2024, 10, 26, 1, 0, tzinfo=UTC),
        dt.datetime(2024, 10, 27, 2, 0, tzinfo=UTC),
        dt.datetime(2024, 10, 28, 2, 0, tzinfo=UTC),
    ]
    assert [fire.utcoffset() for fire in fires] == [
        dt.timedelta(hours=2), dt.timedelta(hours=1), dt.timedelta(hours=1),
    ]  # fmt: skip


def test_a_weekly_paris_job_on_the_dst_sunday_fires_at_local_0300():
    now = dt.datetime(2024, 3, 29, 12, 0, tzinfo=UTC)

    assert next_fire("0 3 * * 0", now, "Europe/Paris") == dt.datetime(2024, 3, 31, 1, 0, tzinfo=UTC)


# -- <JOB>_SCHEDULE ----------------------------------------------------------------------------


def test_the_override_variable_is_the_job_name_upper_cased_with_schedule():
    assert env_name("daily_sales") == "DAILY_SALES_SCHEDULE"


def test_without_an_override_the_declared_schedule_applies():
    assert effective_schedule("sales", "0 3 * * *", {}) == "0 3 * * *"


def test_an_override_replaces_the_declared_schedule_stripped():
    env = {"SALES_SCHEDULE": "  30 4 * * 1-5 "}

    assert effective_schedule("sales", "0 3 * * *", env) == "30 4 * * 1-5"


def test_an_override_gives_a_schedule_to_a_job_that_declared_none():
    assert effective_schedule("sales", None, {"SALES_SCHEDULE": "0 6 * * *"}) == "0 6 * * *"


def test_a_blank_override_leaves_the_declared_schedule():
    assert effective_schedule("sales", "0 3 * * *", {"SALES_SCHEDULE": "   "}) == "0 3 * * *"


def test_another_jobs_override_does_not_apply():
    assert effective_schedule("sales", "0 3 * * *", {"STOCK_SCHEDULE": "off"}) == "0 3 * * *"


@pytest.mark.parametrize("off", ["off", "OFF", "Off", " oFf "])
def test_an_override_of_off_in_any_case_disables_the_schedule(off):
    assert effective_schedule("sales", "0 3 * * *", {"SALES_SCHEDULE": off}) is None


def test_a_declared_schedule_of_off_means_no_schedule():
    assert effective_schedule("sales", "OFF", {}) is None


def test_no_declared_schedule_and_no_override_means_no_schedule():
    assert effective_schedule("sales", None, {}) is None


# -- catch-up and misfire grace ------------------------------------------------------------------
def _utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


def test_latest_fire_finds_the_most_recent_missed_fire_time():
    nightly = cron_trigger("0 3 * * *")

    missed = latest_fire(nightly, after=_utc(2024, 5, 1, 3, 0, 1), now=_utc(2024, 5, 4, 12, 0))

    assert missed == _utc(2024, 5, 4, 3, 0)  # three missed nights, the last one counts


def test_latest_fire_is_none_when_the_last_run_came_after_the_last_fire_time():
    nightly = cron_trigger("0 3 * * *")

    assert (
        latest_fire(nightly, after=_utc(2024, 5, 4, 3, 0, 2), now=_utc(2024, 5, 4, 12, 0)) is None
    )


def test_latest_fire_on_a_frequent_schedule_stays_cheap_and_exact():
    every_second = cron_trigger("* * * * * *")

    missed = latest_fire(every_second, after=_utc(2024, 1, 1), now=_utc(2024, 5, 4, 12, 0, 0, 500))

    assert missed == _utc(2024, 5, 4, 12, 0, 0)


@pytest.mark.parametrize(
    ("expr", "grace"),
    [("*/5 * * * *", 150), ("0 3 * * *", 3600), ("* * * * * *", 1), ("0 * * * *", 1800)],
)
def test_misfire_grace_is_half_the_period_between_1_s_and_1_h(expr, grace):
    assert misfire_grace(cron_trigger(expr), _utc(2024, 5, 4, 12, 0, 30)) == grace
