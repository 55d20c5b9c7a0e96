"""Picks up queued run requests: LISTEN/NOTIFY for speed, polling for certainty.

`python -m worker trigger JOB` (or a plain INSERT into nightshift.triggers) notifies the
channel `nightshift_triggers`. This thread listens on its own connection and, on a notification
or every POLL_SECONDS (a NOTIFY sent while we were reconnecting is lost), asks which jobs have
pending requests and hands each to the worker. The run claims the request itself, under the
job's lock and FOR UPDATE SKIP LOCKED, so each request runs exactly once whichever worker wins.
"""

from __future__ import annotations

import select
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg2

from config import Settings
from worker import store
from worker.db import Database
from worker.errors import DatabaseError, ShutdownRequested
from worker.logs import get_logger

log = get_logger("nightshift.listener")

CHANNEL = "nightshift_triggers"
# The fallback: a request whose NOTIFY was lost still runs within this many seconds.
POLL_SECONDS = 5.0


class TriggerListener:
    def __init__(self, settings: Settings, dispatch: Callable[[str], None]) -> None:
        self.settings = settings
        self.dispatch = dispatch
        self.stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="trigger-listener", daemon=True)

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
            db.on_connect(lambda cur: cur.execute(f"LISTEN {CHANNEL}"))
            listening = False
            while not self.stop.is_set():
                try:
                    jobs = db.run(store.pending_trigger_jobs)
                    if not listening:
                        log.info("trigger_listener_started", channel=CHANNEL, poll_s=POLL_SECONDS)
                        listening = True
                    for job in jobs:
                        self.dispatch(job)
                    self._wait_for_news(db)
                except ShutdownRequested:
                    return
                except DatabaseError as exc:
                    log.error("trigger_poll_failed", error=str(exc))
                    self.stop.wait(POLL_SECONDS)

    def _wait_for_news(self, db: Database) -> None:
        """Until a notification, a wake-up, the poll interval or a stop, whichever is first."""
        deadline = time.monotonic() + POLL_SECONDS
        self._wake.clear()
        while not self.stop.is_set() and not self._wake.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            conn: Any = db.conn
            if conn is None or conn.closed:
                return
            # Short slices, so a stop or a wake-up is seen promptly.
            readable, _, _ = select.select([conn], [], [], min(remaining, 0.25))
            if readable:
                try:
                    conn.poll()
                except psycopg2.Error:
                    return  # the session is gone: the next db.run reconnects
                if conn.notifies:
                    conn.notifies.clear()
                    return
