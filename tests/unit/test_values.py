"""A cursor or version value is a number Python can order, or it is refused: NaN and ±Infinity
never become a cursor, whether they come as a float, a Decimal or text; and a saved cursor that
cannot be read back fails the run in one line that names the remedy."""

from __future__ import annotations

from decimal import Decimal

import pytest

from worker.registry import Job
from worker.run.errors import BadState, Unconvertible
from worker.run.state import StateTracker
from worker.run.values import convert

NOT_FINITE = [
    float("nan"), float("inf"), float("-inf"),
    Decimal("NaN"), Decimal("-NaN"), Decimal("sNaN"), Decimal("Infinity"), Decimal("-Infinity"),
    "NaN", "nan", " NaN ", "Infinity", "-Infinity", "inf", "-inf", "+inf", "sNaN",
]  # fmt: skip
NUMBER_TYPES = ["numeric", "numeric(12,2)", "double precision", "real", "bigint", "integer"]


@pytest.mark.parametrize("sql_type", NUMBER_TYPES)
@pytest.mark.parametrize("value", NOT_FINITE, ids=repr)
def test_nan_and_infinity_are_never_a_cursor_or_a_version(sql_type, value):
    with pytest.raises(Unconvertible):
        convert(sql_type, value)


@pytest.mark.parametrize("sql_type", ["numeric", "double precision", "real"])
@pytest.mark.parametrize("value", [Decimal("NaN"), float("inf"), "-Infinity"], ids=repr)
def test_the_refusal_names_the_value_and_why(sql_type, value):
    with pytest.raises(Unconvertible) as refused:
        convert(sql_type, value)
    assert str(refused.value) == (
        f"{value!r} is not a finite number: NaN and ±Infinity cannot be a cursor or a version"
    )


def test_a_float_too_large_for_double_precision_is_refused_not_made_infinite():
    with pytest.raises(Unconvertible):
        convert("double precision", "1e400")


@pytest.mark.parametrize(
    ("sql_type", "value", "expected"),
    [
        ("numeric", Decimal("1.5"), Decimal("1.5")),
        ("numeric", "-2.25", Decimal("-2.25")),
        ("numeric", 7, Decimal(7)),
        ("numeric", 1e300, Decimal("1e300")),
        ("double precision", Decimal("-0.5"), -0.5),
        ("double precision", "1e300", 1e300),
        ("real", 5e-324, 5e-324),
        ("text", Decimal("NaN"), "NaN"),  # a text cursor orders text: "NaN" is text there
    ],
    ids=repr,
)
def test_finite_numbers_are_still_converted(sql_type, value, expected):
    assert convert(sql_type, value) == expected


# -- a saved cursor that cannot be read back ---------------------------------------------------


def numbers_job(cursor_type: str = "numeric") -> Job:
    return Job(
        name="numbers",
        function=lambda ctx: iter(()),
        table="numbers",
        columns={"id": "text", "n": cursor_type},
        key=("id",),
        cursor="n",
    )


@pytest.mark.parametrize("saved", ["NaN", "Infinity", "-Infinity", "sNaN", "not a number"])
def test_a_saved_cursor_that_cannot_be_read_back_fails_the_run_naming_the_remedy(saved):
    with pytest.raises(BadState) as failed:
        StateTracker(numbers_job(), {"cursor": saved})
    assert failed.value.describe() == (
        f"state: the saved cursor of job 'numbers' cannot be used ({saved!r} is not"
        + (
            " a valid numeric)"
            if saved == "not a number"
            else " a finite number: NaN and ±Infinity cannot be a cursor or a version)"
        )
        + "; run `python -m worker run numbers --full-refresh` to load the job afresh and"
        " replace it"
    )
    assert "\n" not in str(failed.value)


def test_a_scoped_saved_cursor_that_cannot_be_read_back_names_its_source():
    saved = {"cursors": {"https://a.example/feed": "1.5", "https://b.example/feed": "NaN"}}
    with pytest.raises(
        BadState, match=r"cursor of job 'numbers' for source 'https://b.example/feed' cannot"
    ):
        StateTracker(numbers_job(), saved)


def test_a_full_refresh_never_reads_the_saved_cursor_and_replaces_the_state_even_empty():
    tracker = StateTracker(numbers_job(), {"cursor": "NaN", "page": 3}, full_refresh=True)

    assert tracker.cursor is None
    # No row reached a cursor: the run's one batch still replaces what the database holds.
    state = tracker.for_batch(final=True)
    assert state == {}
    tracker.handed(state)
    assert tracker.for_batch(final=True) is None  # once replaced, nothing more to save


def test_a_window_run_never_reads_the_saved_cursor_and_saves_nothing():
    tracker = StateTracker(numbers_job(), {"cursor": "NaN"}, window=True)

    assert tracker.cursor is None
    assert tracker.for_batch(final=True) is None


def test_a_usable_saved_cursor_is_read_back_as_before():
    assert StateTracker(numbers_job(), {"cursor": "1.50"}).cursor == Decimal("1.50")
