"""Two scheduling primitives: evenly spaced permits (`Pacer`) and resizable slots (`Slots`).

`Pacer` is a generic cell-rate algorithm (GCRA): permits leave evenly spaced at `rate` per second
with a burst allowance of about one permit. aiolimiter's leaky bucket does the even spacing, but it
cannot give back tokens a request reserved and did not use, cannot change its rate while running,
and raises when one request needs more than its capacity; all three are needed for adaptive
limits, hence this small scheduler. A request costing more than the burst allowance waits until
the pacer is idle and then runs into debt, which later requests pay off: it waits, never fails.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

Clock = Callable[[], float]


class Pacer:
    """Evenly spaced permits at `rate` per second; `reserve(n)` says how long to wait for n."""

    def __init__(self, rate: float, *, burst: float = 1.0, clock: Clock = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self._rate = rate
        self._burst = burst
        self._clock = clock
        # Theoretical arrival time: when the pacer would be idle again.
        self._tat = clock()

    @property
    def rate(self) -> float:
        """Permits per second."""
        return self._rate

    def set_rate(self, rate: float) -> None:
        """Change the rate from now on; permits already granted keep their times."""
        if rate <= 0:
            raise ValueError("rate must be positive")
        now = self._clock()
        backlog = max(0.0, self._tat - now) * self._rate
        self._rate = rate
        self._tat = now + backlog / rate

    def restart(self, at: float) -> None:
        """Forget the permits granted so far: evenly spaced permits start afresh at `at`."""
        self._tat = max(self._clock(), at)

    def reserve(self, amount: float = 1.0) -> float:
        """Reserve `amount` permits; returns the seconds to wait before using them."""
        now = self._clock()
        tau = self._burst / self._rate
        cost = amount / self._rate
        start = max(now, self._tat + min(cost, tau) - tau)
        self._tat = max(self._tat, start) + cost
        return start - now

    def delay(self, amount: float = 1.0) -> float:
        """Seconds until `amount` permits could be taken, without taking them."""
        now = self._clock()
        tau = self._burst / self._rate
        return max(0.0, self._tat + min(amount / self._rate, tau) - tau - now)

    def take(self, amount: float = 1.0) -> None:
        """Take `amount` permits now (after `delay` said they are free)."""
        self._tat = max(self._tat, self._clock()) + amount / self._rate

    def refund(self, amount: float) -> None:
        """Give back permits reserved but not used; a negative amount charges extra ones."""
        if amount > 0:
            self._tat = max(self._clock(), self._tat - amount / self._rate)
        elif amount < 0:
            self._tat = max(self._clock(), self._tat) - amount / self._rate


class Slots:
    """A semaphore whose size can change while it is in use (adaptive concurrency)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    def try_acquire(self) -> bool:
        """Take a slot if one is free now (and nobody queues before us)."""
        if self.used < self.limit and not self._waiters:
            self.used += 1
            return True
        return False

    async def acquire(self) -> None:
        """Take a slot, waiting while all are in use."""
        if self.try_acquire():
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # granted just as we were cancelled: hand it on
            else:
                self._waiters.remove(future)
            raise

    def release(self) -> None:
        """Give a slot back."""
        self.used -= 1
        self._wake()

    def resize(self, limit: int) -> None:
        """Change the number of slots; callers above a smaller limit finish what they hold."""
        self.limit = max(1, limit)
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.used < self.limit:
            future = self._waiters.popleft()
            if not future.done():
                self.used += 1
                future.set_result(None)
