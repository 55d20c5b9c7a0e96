"""One batch in flight: the server writes batch N while the job yields the rows of batch N+1.

psycopg2 releases the GIL while it waits for the server, so a thread sending one batch lets the
run's own thread go on reading, checking and buffering the next. One batch at a time, in order:
a batch is handed over only once the one before it has committed, and a batch that failed
fails the run at the next hand-over (or when the run waits for the last one).
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor


class InFlight:
    """A thread of its own that sends what it is handed, one thing at a time."""

    def __init__(self, name: str) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._pending: Future | None = None

    def hand_over(self, send: Callable[[], object]) -> None:
        """Wait for the previous send (raising its failure), then start `send`."""
        self.wait()
        # The run's log context (job, run_id) goes with it.
        self._pending = self._pool.submit(contextvars.copy_context().run, send)

    def wait(self) -> None:
        """Wait for the send in flight, if any; raise what it raised."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def settle(self) -> BaseException | None:
        """Wait for the send in flight; return (not raise) its failure."""
        try:
            self.wait()
        except BaseException as exc:
            return exc
        return None

    def close(self) -> None:
        self.settle()
        self._pool.shutdown(wait=True)
