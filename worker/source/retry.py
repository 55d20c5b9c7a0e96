"""Waits between retries: a Retry-After honoured (seconds or an HTTP-date), never past the
request's deadline, and cut short by a shutdown.

urllib3 decides *whether* to retry (connection errors; 429, 502, 503, 504 on an idempotent
method; `HTTP_RETRIES` times) and logs each retry. Its own wait is a plain `time.sleep` of
whatever the server asks — an hour, if a Retry-After says so — that nothing interrupts outside
the main thread. `WaitingRetry` keeps urllib3's decisions and hands every wait to the session,
which checks it against the deadline and waits in short slices, checking for a shutdown.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import time
from collections.abc import Callable
from typing import Any

from urllib3.util.retry import Retry

# wait(seconds, asked, response): `asked` is True when the server set the wait (Retry-After).
Waiter = Callable[[float, bool, Any], None]


class WaitingRetry(Retry):
    """urllib3's Retry, whose waits go through `waiter` (set by the session)."""

    waiter: Waiter | None = None

    def new(self, **kw: Any) -> WaitingRetry:
        retry = super().new(**kw)
        retry.waiter = self.waiter
        return retry

    def __repr__(self) -> str:  # urllib3's retry lines read as they always have
        return super().__repr__().replace(type(self).__name__, "Retry", 1)

    def sleep(self, response: Any = None) -> None:
        asked = None
        if response is not None and self.respect_retry_after_header:
            asked = retry_after(response.headers.get("Retry-After"))
        seconds = asked if asked is not None else self.get_backoff_time()
        if self.waiter is not None:  # even for 0 s: no retry starts past the deadline
            self.waiter(seconds, asked is not None, response)
        elif seconds > 0:
            time.sleep(seconds)


def retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After value: delay-seconds or an HTTP-date (RFC 9110
    10.2.3); a date in the past is 0; None when absent or unreadable (then urllib3's backoff)."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": UTC, as HTTP-dates always are
        when = when.replace(tzinfo=dt.UTC)
    now = now or dt.datetime.now(dt.UTC)
    return max(0.0, (when - now).total_seconds())
