"""How often a process may ask a source that costs something for the database URL.

The Heroku Platform API allows ~4,500 requests an hour per account, shared with the operator's
own CLI, the dashboard and every other app of the account; `heroku config:get` (the usual
DATABASE_URL_COMMAND) spends the same requests. Every retrier of a process (each run's
`Database`, the queue watcher, housekeeping) resolves again after an error that can mean the
database moved: during an outage, unchecked, three of them spend the hour's requests in ~40
minutes (232 calls in two minutes, measured). So,
for each such source, one `Budget` per process:

- coalesce: a caller arriving while another thread is resolving waits for that answer;
- share: an answer younger than SHARE_SECONDS is handed, without a call, to each thread that
  has not had it yet; a thread that already had the newest answer asks again because it did
  not work for it, so it gets a fresh call (if the budget allows);
- a token bucket: RESOLVER_BURST calls at once, then one per RESOLVER_INTERVAL seconds;
- a 429's Retry-After: no call at all before the time it names.

When the budget says "not now", the caller gets the last good resolution (its connect attempt
then fails or succeeds and its backoff goes on) or, before any good one, the last error again:
the budget raises no error of its own. The first call of a process is always allowed and takes
no token.

The numbers (config/settings.py). Burst 5: one retrier's first five backoff steps (0.1, 0.2,
0.4, 0.8, 1.6 s, jittered) each re-resolve, so a rotation or failover whose new URL is out
within ~2 s of the fault is found at once (bench/recovery.py: well under 3 s), and retriers
hit by the same fault share those answers instead of spending three bursts. Then one call per
12 s: 300 an hour however long the outage and however many retriers (1/15 of the account's
limit), and a URL that moves in the middle of a long outage is still seen within 12 s plus one
backoff wait (≤ 2 s), short next to the minutes of a maintenance window. A two-minute outage
with three retriers costs at most 5 + 120 / 12 = 15 calls (14 measured; 232 without the budget,
tests/acceptance/test_resolver_limits.py).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar, cast

from worker.database.errors import ResolverError
from worker.logs import get_logger

T = TypeVar("T")
log = get_logger("nightshift.resolver")

# How long an answer serves the threads that have not had it yet: one backoff wait at most
# (DB_RETRY_MAX_DELAY, 2 s), so near-simultaneous retriers of one fault share one call.
SHARE_SECONDS = 2.0
# A Retry-After beyond this is taken as this (a broken header must not silence us for days);
# the Platform API's limit is counted per hour.
MAX_RETRY_AFTER = 3600.0


@dataclass(frozen=True)
class _Answer:
    number: int  # 1, 2, … in the order the answers came
    at: float  # the clock when it came
    value: object = None
    error: ResolverError | None = None


class Budget:
    """Coalesces, shares and rate-limits the calls to one costly source, for every thread."""

    def __init__(
        self,
        source: str,
        burst: int,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
        share: float = SHARE_SECONDS,
    ) -> None:
        self.source = source
        self.burst = max(1, burst)
        self.interval = interval
        self.share = share
        self.calls = 0  # calls made so far
        self.waiting = 0  # callers waiting for a call in flight
        self._clock = clock
        self._cond = threading.Condition()
        self._tokens = float(self.burst)
        self._refilled_at = clock()
        self._not_before = -math.inf  # a 429's Retry-After, on our clock
        self._calling = False
        self._latest: _Answer | None = None
        self._good: _Answer | None = None
        self._throttled = False  # said so in the log, until the bucket is full again
        self._had = threading.local()  # the number of the newest answer each thread had

    def resolve(self, call: Callable[[], T]) -> T:
        """`call()`'s answer (a value, or a ResolverError raised), a shared one, or the last."""
        with self._cond:
            while self._calling:  # someone is asking: wait for that answer
                self.waiting += 1
                try:
                    self._cond.wait()
                finally:
                    self.waiting -= 1
            now = self._clock()
            latest = self._latest
            if latest is not None and self._new_to_this_thread(latest, now):
                return cast(T, self._hand(latest))
            if not self._allowed(now):
                return cast(T, self._hand(self._good or latest))
            self._calling = True
        try:
            value, error = call(), None
        except ResolverError as exc:
            value, error = None, exc
        except BaseException:
            with self._cond:
                self._calling = False
                self._cond.notify_all()
            raise
        with self._cond:
            answer = self._record(value, error)
            self._calling = False
            self._cond.notify_all()
            return cast(T, self._hand(answer))

    def next_call_in(self) -> float:
        """Seconds until a call would be allowed (0 when one would be now)."""
        with self._cond:
            return self._wait(self._clock())

    # -- inside the lock ---------------------------------------------------------------------
    def _allowed(self, now: float) -> bool:
        if self._latest is None:
            return True  # the first resolution of the process
        self._refill(now)
        if now >= self._not_before and self._tokens >= 1:
            self._tokens -= 1
            return True
        if not self._throttled:
            self._throttled = True
            log.warning(
                "resolver_throttled",
                source=self.source,
                reason="retry_after" if now < self._not_before else "budget",
                next_call_in_s=round(self._wait(now), 1),
                serving="the last good URL" if self._good else "the last error",
            )
        return False

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._refilled_at)
        self._tokens = min(float(self.burst), self._tokens + elapsed / self.interval)
        self._refilled_at = now
        if self._tokens >= self.burst and now >= self._not_before:
            self._throttled = False

    def _wait(self, now: float) -> float:
        self._refill(now)
        for_token = max(0.0, 1 - self._tokens) * self.interval
        return max(for_token, self._not_before - now, 0.0)

    def _record(self, value: object, error: ResolverError | None) -> _Answer:
        now = self._clock()
        self.calls += 1
        number = self._latest.number + 1 if self._latest else 1
        answer = _Answer(number, now, value, error)
        self._latest = answer
        if error is None:
            self._good = answer
        else:
            retry_after = getattr(error, "retry_after", None)
            if retry_after is not None:
                self._not_before = now + min(max(retry_after, 0.0), MAX_RETRY_AFTER)
                self._throttled = False  # say it: this episode has a reason of its own
        return answer

    def _new_to_this_thread(self, answer: _Answer, now: float) -> bool:
        return now - answer.at < self.share and answer.number > self._had_number()

    def _had_number(self) -> int:
        return getattr(self._had, "number", 0)

    def _hand(self, answer: _Answer | None) -> object:
        assert answer is not None  # the first call is always allowed: there is an answer
        self._had.number = max(self._had_number(), answer.number)
        if answer.error is not None:
            raise ResolverError(str(answer.error), fatal=answer.error.fatal) from None
        return answer.value


_budgets: dict[tuple[object, ...], Budget] = {}
_budgets_lock = threading.Lock()


def budget_for(key: tuple[object, ...], source: str, burst: int, interval: float) -> Budget:
    """The process's one budget for the source `key` names (created on first use)."""
    with _budgets_lock:
        budget = _budgets.get(key)
        if budget is None:
            budget = _budgets[key] = Budget(source, burst, interval)
        return budget
