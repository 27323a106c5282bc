"""Per-destination rate limits: a token bucket that may go into debt.

An envelope is sent whole, so a 2,000-record envelope must pass a
100 records/s limit too: it is let through when the bucket is not in debt,
and the debt it leaves delays what comes next (the average rate holds; a
bucket that refused amounts larger than its size would stall forever).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["TokenBucket"]


class TokenBucket:
    """``rate`` tokens per second, at most ``rate * burst_s`` saved up."""

    def __init__(
        self,
        rate: float,
        *,
        burst_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst_s <= 0:
            raise ValueError("rate and burst_s must be positive")
        self.rate = rate
        self.capacity = rate * burst_s
        self._clock = clock
        self._tokens = self.capacity
        self._at = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate)
        self._at = now

    def wait_s(self) -> float:
        """Seconds until the bucket is out of debt (0: a take would pass now)."""
        self._refill()
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    async def ready(self) -> float:
        """Wait until the bucket is out of debt; returns the seconds waited."""
        waited = 0.0
        while (delay := self.wait_s()) > 0:
            await asyncio.sleep(delay)
            waited += delay
        return waited

    def spend(self, amount: float) -> None:
        self._refill()
        self._tokens -= amount
