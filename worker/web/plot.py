"""A job's recent runs as a small server-rendered SVG: rows written and duration, one mark per
run, oldest on the left, failures marked.

This module only lays the marks out (pure arithmetic, no markup); `templates/plot.html` draws
them, with stable classes and data attributes (`g.run`, `.failed`, `data-run-id`) that the
browser tests and anyone styling the page can rely on.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from worker.store.records import RunRecord

WIDTH = 600
ROWS_TOP, ROWS_HEIGHT = 14, 80  # the rows panel
DURATION_TOP, DURATION_HEIGHT = 116, 40  # the duration panel, below it
HEIGHT = DURATION_TOP + DURATION_HEIGHT + 4
# Runs that did not complete their work: drawn in red. `failed` is the only status that means
# the job broke; the others mean it was stopped or never started (`refused`: a request no run
# could serve), and say so in their title.
FAILED = frozenset({"failed"})
CUT_SHORT = frozenset({"interrupted", "abandoned", "missed", "refused"})
# A plot has room for at least this many runs, newest on the right: a job with few runs gets
# bars of the usual width, not a few wide slabs.
MIN_SLOTS = 12


@dataclass(frozen=True)
class Mark:
    """One run's place in the plot."""

    run_id: int
    status: str
    x: float  # left edge of the run's slot
    width: float  # the bar's width (the slot less a gap)
    rows_y: float
    rows_height: float
    duration_y: float
    duration_height: float
    title: str  # the tooltip: what the run did

    @property
    def classes(self) -> str:
        kind = (
            "failed" if self.status in FAILED else "cut-short" if self.status in CUT_SHORT else ""
        )
        return f"run status-{self.status} {kind}".strip()


@dataclass(frozen=True)
class Plot:
    job: str
    marks: list[Mark]
    max_rows: int
    max_duration: float  # seconds
    width: int = WIDTH
    height: int = HEIGHT
    rows_top: int = ROWS_TOP
    rows_height: int = ROWS_HEIGHT
    duration_top: int = DURATION_TOP
    duration_height: int = DURATION_HEIGHT

    @property
    def failures(self) -> int:
        return sum(mark.status in FAILED for mark in self.marks)


def seconds(run: RunRecord) -> float:
    return 0.0 if run.duration is None else max(run.duration.total_seconds(), 0.0)


def plot(job: str, runs: Sequence[RunRecord]) -> Plot:
    """Lay out `runs` (any order; drawn oldest first) for the job's plot."""
    ordered = sorted(runs, key=lambda run: (run.started_at, run.id))
    max_rows = max((run.rows for run in ordered), default=0)
    max_duration = max((seconds(run) for run in ordered), default=0.0)
    slots = max(len(ordered), MIN_SLOTS)
    slot = WIDTH / slots
    gap = min(slot * 0.2, 4.0)
    marks = []
    for i, run in enumerate(ordered, start=slots - len(ordered)):
        rows_height = _scaled(run.rows, max_rows, ROWS_HEIGHT)
        duration_height = _scaled(seconds(run), max_duration, DURATION_HEIGHT)
        marks.append(
            Mark(
                run_id=run.id,
                status=run.status,
                x=round(i * slot + gap / 2, 2),
                width=round(slot - gap, 2),
                rows_y=round(ROWS_TOP + ROWS_HEIGHT - rows_height, 2),
                rows_height=rows_height,
                duration_y=round(DURATION_TOP + DURATION_HEIGHT - duration_height, 2),
                duration_height=duration_height,
                title=_title(run),
            )
        )
    return Plot(job, marks, max_rows, round(max_duration, 2 if max_duration < 10 else 1))


def duration_text(value: float) -> str:
    """Seconds as a person reads them: 0.04 s, 3.21 s, 95.3 s."""
    return f"{value:.2f} s" if value < 10 else f"{value:.1f} s"


def _scaled(value: float, largest: float, height: int) -> float:
    """A bar's height; anything above zero stays visible (at least 1 px)."""
    if value <= 0 or largest <= 0:
        return 0.0
    return round(max(value / largest * height, 1.0), 2)


def _title(run: RunRecord) -> str:
    took = "running" if run.duration is None else duration_text(seconds(run))
    started = run.started_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    rejected = f", {run.rejected} rejected" if run.rejected else ""
    return f"run {run.id} {run.status}: {run.rows} rows{rejected}, {took}, {started}"
