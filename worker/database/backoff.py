"""How long to wait between attempts: exponential backoff with jitter, capped, within a budget."""

from __future__ import annotations

import random
import time

from config import Settings


class Backoff:
    """Exponential backoff with jitter, each wait capped, all of them within a total budget."""

    def __init__(self, settings: Settings, budget: float | None = None) -> None:
        self.initial = settings.db_retry_initial_delay
        self.cap = settings.db_retry_max_delay
        self.started = time.monotonic()
        self.deadline = self.started + (settings.db_retry_timeout if budget is None else budget)
        self.attempts = 0

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def next_delay(self) -> float | None:
        """How long to wait before the next attempt, or None when the budget is spent."""
        self.attempts += 1
        # The exponent is capped: 2 ** 1100 would overflow a float after ~1,000 retries.
        ceiling = min(self.cap, self.initial * 2 ** min(self.attempts - 1, 64))
        delay = ceiling / 2 + random.uniform(0, ceiling / 2)
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            return None
        return min(delay, remaining)
