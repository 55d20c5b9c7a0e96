"""A job's state only ever advances past rows that are committed."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from uuid import UUID

import pytest

from worker.registry import Job
from worker.run.state import StateTracker, decode_cursor


def at(hour: int) -> dt.datetime:
    return dt.datetime(2024, 1, 1, hour, 0, tzinfo=dt.UTC)


@pytest.fixture
def job() -> Job:
    return Job(
        name="j",
        function=lambda ctx: iter(()),
        table="t",
        columns={"id": "text", "updated": "timestamptz"},
        key=("id",),
        cursor="updated",
    )


def batch(tracker: StateTracker, *hours: int, final: bool = False) -> dict | None:
    """What the runner does per batch: observe its rows, ask for the state, commit it."""
    for hour in hours:
        tracker.observe({"id": f"r{hour}", "updated": at(hour)})
    state = tracker.for_batch(final=final)
    tracker.handed(state)
    return state


# -- the cursor --------------------------------------------------------------------------------


def test_rows_in_cursor_order_save_the_highest_cursor_with_every_batch(job):
    tracker = StateTracker(job, {})

    assert batch(tracker, 1, 2) == {"cursor": at(2)}
    assert batch(tracker, 3, 4) == {"cursor": at(4)}
    assert batch(tracker, 5, final=True) == {"cursor": at(5)}
    assert tracker.cursor == at(5)


def test_rows_in_order_after_a_saved_cursor_advance_it_from_there(job):
    tracker = StateTracker(job, {"cursor": at(3).isoformat()})

    assert batch(tracker, 3, 4) == {"cursor": at(4)}


def test_after_a_row_goes_backwards_mid_run_batches_keep_the_committed_cursor(job):
    tracker = StateTracker(job, {})

    assert batch(tracker, 1, 2) == {"cursor": at(2)}
    assert batch(tracker, 5, 3) is None
    assert batch(tracker, 6, 7) is None
    assert tracker.cursor == at(2)
    assert batch(tracker, 4, final=True) == {"cursor": at(7)}
    assert tracker.cursor == at(7)


def test_a_mid_run_batch_after_a_backwards_row_saves_checkpoints_with_the_previous_cursor(job):
    saved = at(2).isoformat()
    tracker = StateTracker(job, {"cursor": saved})
    tracker.observe({"id": "a", "updated": at(5)})
    tracker.observe({"id": "b", "updated": at(3)})
    tracker.checkpoint({"page": 2})

    assert tracker.for_batch(final=False) == {"cursor": saved, "page": 2}


def test_a_backwards_row_in_the_only_batch_still_saves_the_highest_cursor_at_the_end(job):
    tracker = StateTracker(job, {})

    assert batch(tracker, 3, 1, 2, final=True) == {"cursor": at(3)}


def test_rows_no_newer_than_the_saved_cursor_change_nothing(job):
    tracker = StateTracker(job, {"cursor": at(5).isoformat()})

    assert batch(tracker, 3, 5) is None
    assert batch(tracker, 4, final=True) is None
    assert tracker.cursor == at(5)


def test_a_run_without_rows_saves_nothing(job):
    tracker = StateTracker(job, {"cursor": at(5).isoformat(), "page": 3})

    assert tracker.for_batch(final=True) is None


def test_rows_without_a_cursor_value_are_not_counted(job):
    tracker = StateTracker(job, {})
    tracker.observe({"id": "a", "updated": None})
    tracker.observe({"id": "b"})

    assert tracker.for_batch(final=True) is None


def test_a_job_without_a_cursor_column_never_saves_a_cursor(job):
    plain = Job(
        name="j",
        function=job.function,
        table="t",
        columns={"id": "text", "updated": "timestamptz"},
        key=("id",),
    )
    tracker = StateTracker(plain, {})
    tracker.observe({"id": "a", "updated": at(1)})

    assert tracker.cursor is None
    assert tracker.for_batch(final=True) is None


def test_the_saved_cursor_is_decoded_to_the_type_of_its_column(job):
    tracker = StateTracker(job, {"cursor": "2024-01-01T02:00:00+00:00"})

    assert tracker.cursor == at(2)
    assert isinstance(tracker.cursor, dt.datetime)


# -- checkpoints -------------------------------------------------------------------------------


def test_checkpoint_values_are_saved_with_the_next_batch_and_only_once(job):
    tracker = StateTracker(job, {})
    tracker.checkpoint({"page": 2})

    assert batch(tracker, 1) == {"cursor": at(1), "page": 2}
    assert batch(tracker, final=True) is None


def test_checkpoint_values_are_kept_alongside_saved_state(job):
    tracker = StateTracker(job, {"cursor": at(1).isoformat(), "page": 1, "etag": "x"})
    tracker.checkpoint({"page": 2})

    assert batch(tracker, final=True) == {"cursor": at(1).isoformat(), "page": 2, "etag": "x"}


def test_a_checkpoint_equal_to_the_saved_value_changes_nothing(job):
    tracker = StateTracker(job, {"page": 2})
    tracker.checkpoint({"page": 2})

    assert tracker.for_batch(final=True) is None


def test_a_checkpoint_not_yet_committed_is_offered_again_with_the_next_batch(job):
    tracker = StateTracker(job, {})
    tracker.checkpoint({"page": 2})
    tracker.for_batch(final=False)  # that batch's transaction failed: no committed() call

    assert tracker.for_batch(final=True) == {"page": 2}


def test_checkpoint_refuses_the_cursor_key(job):
    tracker = StateTracker(job, {})

    with pytest.raises(ValueError) as raised:
        tracker.checkpoint({"cursor": "2030-01-01", "page": 2})

    assert str(raised.value) == (
        "'cursor' and 'cursors' are kept by the engine; choose another name"
    )
    assert tracker.for_batch(final=True) is None


# -- full refresh ------------------------------------------------------------------------------


def test_full_refresh_starts_from_empty_state_and_saves_what_this_run_reaches(job):
    tracker = StateTracker(job, {"cursor": at(9).isoformat(), "page": 7}, full_refresh=True)

    assert tracker.saved == {}
    assert tracker.cursor is None
    assert batch(tracker, 1, 2, final=True) == {"cursor": at(2)}


# -- decode_cursor -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql_type", "raw", "expected"),
    [
        ("timestamptz", "2024-01-01T02:00:00+00:00", at(2)),
        ("timestamp with time zone", "2024-01-01T02:00:00Z", at(2)),
        ("timestamp", "2024-01-01T02:00:00", dt.datetime(2024, 1, 1, 2, 0)),
        ("date", "2024-02-29", dt.date(2024, 2, 29)),
        ("bigint", "9007199254740993", 9007199254740993),
        ("integer", 42, 42),
        (" BIGINT ", "7", 7),
        ("numeric", "1.10", Decimal("1.10")),
        ("numeric(12,2)", "123.45", Decimal("123.45")),
        ("double precision", 1.5, 1.5),
        ("double precision", "2.25", 2.25),
        ("real", "0.5", 0.5),
        ("text", "abc", "abc"),
        (
            "uuid",
            "7b0e1c1e-0000-4000-8000-000000000000",
            UUID("7b0e1c1e-0000-4000-8000-000000000000"),
        ),
    ],
)
def test_decode_cursor_returns_the_columns_python_type(sql_type, raw, expected):
    decoded = decode_cursor(sql_type, raw)

    assert decoded == expected
    assert type(decoded) is type(expected)


@pytest.mark.parametrize("sql_type", ["timestamptz", "date", "bigint", "numeric", "text"])
def test_decode_cursor_of_none_is_none(sql_type):
    assert decode_cursor(sql_type, None) is None
