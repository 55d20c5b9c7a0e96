"""LISTEN on a channel, and wait for a NOTIFY on the session a `Database` keeps.

Every new session listens again (a reconnect forgets LISTEN); a NOTIFY sent while the session
was down is lost, so whoever waits here also polls.
"""

from __future__ import annotations

import select
import time
from collections.abc import Callable

import psycopg2
from psycopg2 import sql

from worker.database.connection import Database

# Short slices, so a stop or a wake-up is seen promptly.
_SLICE_SECONDS = 0.25


class Channel:
    """One LISTEN channel on `db`'s session."""

    def __init__(self, db: Database, name: str) -> None:
        self.db = db
        self.name = name
        listen = sql.SQL("LISTEN {}").format(sql.Identifier(name))
        db.on_connect(lambda cur: cur.execute(listen))

    def wait(self, timeout: float, give_up: Callable[[], bool]) -> bool:
        """Wait up to `timeout` s for a notification; True when one came.

        Returns early (False) when `give_up()` turns true or the session is gone (the next
        `db.run` reconnects and listens again)."""
        deadline = time.monotonic() + timeout
        while not give_up():
            remaining = deadline - time.monotonic()
            conn = self.db.conn
            if remaining <= 0 or conn is None or conn.closed:
                return False
            readable, _, _ = select.select([conn], [], [], min(remaining, _SLICE_SECONDS))
            if not readable:
                continue
            try:
                conn.poll()
            except psycopg2.Error:
                return False
            if conn.notifies:
                conn.notifies.clear()
                return True
        return False
