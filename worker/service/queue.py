"""Picks up queued run requests: LISTEN/NOTIFY for speed, polling for certainty.

`python -m worker trigger JOB` (or a plain INSERT into nightshift.triggers) notifies the
channel `nightshift_triggers`. This thread listens on its own session and, on a notification
or every POLL_SECONDS (a NOTIFY sent while we were reconnecting is lost), asks which jobs have
pending requests and hands each to the worker. The run claims the request itself, under the
job's lock and FOR UPDATE SKIP LOCKED, so each request runs exactly once whichever worker wins.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from config import Settings
from worker.database import Database, DatabaseError
from worker.database.notify import Channel
from worker.errors import ShutdownRequested
from worker.logs import get_logger
from worker.store import queries

log = get_logger("nightshift.listener")

CHANNEL = "nightshift_triggers"
# The fallback: a request whose NOTIFY was lost still runs within this many seconds.
POLL_SECONDS = 5.0


class QueueWatcher:
    """A thread that hands `dispatch(job)` each job with a pending request."""

    def __init__(self, settings: Settings, dispatch: Callable[[str], None]) -> None:
        self.settings = settings
        self.dispatch = dispatch
        self.stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="queue-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """Look for pending requests now (e.g. after a run, in case more are queued)."""
        self._wake.set()

    def close(self) -> None:
        """Stop listening and claiming; wait briefly for the thread (it only ever waits)."""
        self.stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        name = f"nightshift:listener@{self.settings.dyno}"
        with Database(self.settings, name, stop=self.stop) as db:
            # Every (re)connect listens again; the poll that follows it catches what was missed.
            channel = Channel(db, CHANNEL)
            listening = False
            while not self.stop.is_set():
                try:
                    jobs = db.run(queries.jobs_with_pending_requests)
                    if not listening:
                        log.info("trigger_listener_started", channel=CHANNEL, poll_s=POLL_SECONDS)
                        listening = True
                    for job in jobs:
                        self.dispatch(job)
                    self._wake.clear()
                    channel.wait(POLL_SECONDS, give_up=self._should_look_now)
                except ShutdownRequested:
                    return
                except DatabaseError as exc:
                    log.error("trigger_poll_failed", error=str(exc))
                    self.stop.wait(POLL_SECONDS)

    def _should_look_now(self) -> bool:
        return self.stop.is_set() or self._wake.is_set()
