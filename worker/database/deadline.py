"""The client-side deadline: psycopg2's wait callback, so that no database call hangs forever.

libpq's options (connect_timeout, keepalives, tcp_user_timeout) bound every kernel-level fault,
but not a peer that accepts bytes and never answers (a userspace middlebox whose kernel still
ACKs). With a wait callback installed psycopg2 runs every connection asynchronously and asks us
to wait for its socket, so we wait with a deadline:

- connecting: at most `connect_timeout` (libpq does not enforce it for asynchronous connects);
- querying: after `silence` seconds without a byte from the server, `probe()` asks the server,
  over a second connection, whether our session is still working — a long statement or a lock
  wait is legitimate. If the probe cannot connect, or our session is not working, the
  connection is presumed dead: psycopg2 closes it and the caller reconnects.

The callback is process-wide (psycopg2's design). Connections it was not told about wait as
they would without it.
"""

from __future__ import annotations

import select
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg2
from psycopg2 import extensions


@dataclass
class Watch:
    silence: float
    probe: Callable[[], bool] | None = None  # True while our session is alive and working


_watches: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_connecting = threading.local()
_installed = threading.Lock()


def install() -> None:
    """Install the wait callback (once per process)."""
    with _installed:
        if extensions.get_wait_callback() is not _wait:
            extensions.set_wait_callback(_wait)


def watch(conn: extensions.connection, silence: float, probe: Callable[[], bool] | None) -> None:
    _watches[conn] = Watch(silence, probe)


@contextmanager
def connecting(timeout: float) -> Iterator[None]:
    """Bound the connection attempts made inside this block (in this thread) to `timeout` s."""
    _connecting.deadline = time.monotonic() + timeout
    _connecting.timeout = timeout
    try:
        yield
    finally:
        _connecting.deadline = None


def _wait(conn: extensions.connection) -> None:
    watched = _watches.get(conn)
    deadline = None if watched else getattr(_connecting, "deadline", None)
    last_heard = time.monotonic()
    while True:
        state = conn.poll()
        if state == extensions.POLL_OK:
            return
        readers = [conn.fileno()] if state == extensions.POLL_READ else []
        writers = [conn.fileno()] if state == extensions.POLL_WRITE else []
        if deadline is not None:
            timeout: float | None = deadline - time.monotonic()
        elif watched is not None:
            timeout = last_heard + watched.silence - time.monotonic()
        else:
            timeout = None
        ready = (
            select.select(readers, writers, [], max(timeout, 0))
            if timeout is not None
            else (select.select(readers, writers, []))
        )
        if ready[0] or ready[1]:
            last_heard = time.monotonic()
            continue
        if deadline is not None:
            raise psycopg2.OperationalError(
                f"timeout expired: no connection within {_connecting.timeout:g} s"
            )
        if watched is not None and watched.probe is not None and watched.probe():
            last_heard = time.monotonic()
            continue
        raise psycopg2.OperationalError(
            f"no answer from the server for {watched.silence:g} s; the connection is presumed dead"
        )
