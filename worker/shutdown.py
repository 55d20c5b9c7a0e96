"""Shutdown on SIGTERM, warm then cold (as rq's HerokuWorker).

The first SIGTERM (or SIGINT) asks every run to stop at its next safe point: the batch being
written commits or rolls back, the run is recorded as interrupted. While a run waits on its
job's code in the main thread (an HTTP read, say) the signal interrupts it at once. A second
signal exits at once: every batch is idempotent, so nothing half-done survives it.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

from worker.errors import ShutdownRequested
from worker.logs import get_logger

log = get_logger(__name__)

COLD_EXIT_CODE = 1


class Shutdown:
    """A process-wide stop flag, set by signals, checked by runs at safe points."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signals = 0
        self._interruptible = False
        self._callbacks: list[Callable[[], None]] = []

    @property
    def requested(self) -> bool:
        return self.event.is_set()

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)

    def on_request(self, callback: Callable[[], None]) -> None:
        """Call `callback` (in the main thread) when the first signal arrives."""
        self._callbacks.append(callback)

    def request(self, reason: str = "requested") -> None:
        if self.event.is_set():
            return
        self.event.set()
        log.info("shutdown_requested", reason=reason)
        for callback in self._callbacks:
            callback()

    def check(self) -> None:
        """Raise ShutdownRequested if a shutdown was asked for."""
        if self.event.is_set():
            raise ShutdownRequested()

    @contextmanager
    def interruptible(self) -> Iterator[None]:
        """In the main thread, let a signal raise ShutdownRequested right inside this block."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        self.check()
        self._interruptible = True
        try:
            yield
        finally:
            self._interruptible = False

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.signals += 1
        name = signal.Signals(signum).name
        if self.signals > 1:
            log.warning("cold_shutdown", signal=name)
            os._exit(COLD_EXIT_CODE)
        self.request(reason=name)
        if self._interruptible:
            self._interruptible = False
            raise ShutdownRequested()
