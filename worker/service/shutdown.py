"""Shutdown on SIGTERM, warm then cold (as rq's HerokuWorker).

The first SIGTERM (or SIGINT) asks every run to stop at its next safe point: the batch being
written commits or rolls back, the run is recorded as interrupted. While a run waits on its
job's code in the main thread (an HTTP read, say) the signal interrupts it at once. A second
signal exits at once: every batch is idempotent, so nothing half-done survives it.

The handler itself only sets a flag (and raises, where allowed): logging or stopping the
scheduler from inside a signal handler can re-enter a stream the main thread was writing to.
A small thread does that work instead.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sys
import threading
from collections.abc import Callable
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
        self.reason = "requested"
        self._interruptible = False
        self._callbacks: list[Callable[[], None]] = []
        self._block = _Interruptible(self)

    @property
    def requested(self) -> bool:
        return self.event.is_set()

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)
        threading.Thread(target=self._on_request, name="shutdown", daemon=True).start()

    def on_request(self, callback: Callable[[], None]) -> None:
        """Call `callback` (from a helper thread) once a shutdown is requested."""
        self._callbacks.append(callback)

    def check(self) -> None:
        """Raise ShutdownRequested if a shutdown was asked for."""
        if self.event.is_set():
            raise ShutdownRequested()

    def interruptible(self) -> _Interruptible:
        """A block that checks for a shutdown as it is entered and, in the main thread, lets a
        signal raise ShutdownRequested right inside it. (A plain object, not a generator: a
        run enters it once per row its job yields.)"""
        return self._block

    def _on_request(self) -> None:
        self.event.wait()
        log.info("shutdown_requested", reason=self.reason)
        for callback in self._callbacks:
            try:
                callback()
            except Exception:
                log.exception("shutdown_callback_failed")

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.signals += 1
        name = signal.Signals(signum).name
        if self.signals > 1:
            _last_words({"signal": name, "event": "cold_shutdown", "level": "warning"})
            os._exit(COLD_EXIT_CODE)
        self.reason = name
        self.event.set()
        if self._interruptible:
            self._interruptible = False
            raise ShutdownRequested()


class _Interruptible:
    """The block of `Shutdown.interruptible()`: entering it checks for a shutdown; in the main
    thread, a signal inside it raises ShutdownRequested at once."""

    __slots__ = ("_main", "_shutdown")

    def __init__(self, shutdown: Shutdown) -> None:
        self._shutdown = shutdown
        self._main = threading.main_thread().ident

    def __enter__(self) -> None:
        self._shutdown.check()
        if threading.get_ident() == self._main:
            self._shutdown._interruptible = True

    def __exit__(self, *_exc: object) -> None:
        if threading.get_ident() == self._main:
            self._shutdown._interruptible = False


def _last_words(event: dict[str, str]) -> None:
    """One log line written straight to the file descriptor: safe inside a signal handler."""
    event = {**event, "logger": __name__, "timestamp": dt.datetime.now(dt.UTC).isoformat()}
    event["timestamp"] = event["timestamp"].replace("+00:00", "Z")
    os.write(sys.stdout.fileno(), (json.dumps(event) + "\n").encode())
