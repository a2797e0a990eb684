"""Per-provider pacing: requests/min, tokens/min and a shared cool-down, behind one `acquire`.

Providers state limits per minute but enforce them over shorter periods (1,200/min may be checked
as 200 per 10 s), so a limiter that lets a minute's quota out in one burst earns 429s. `Pacer`
is a generic cell-rate algorithm (GCRA): permits leave evenly spaced at the configured rate with
a burst allowance of about one permit, and we pace a little under the stated limit
(`SAFETY_MARGIN`) so that jitter at a window's edge does not tip it over.

aiolimiter's leaky bucket does the even spacing, but it cannot give back tokens a request
reserved and did not use, cannot change its rate while running, and raises when one request
needs more than its capacity; all three are needed here, hence this small scheduler.
A request costing more than the burst allowance waits until the pacer is idle and then runs
into debt, which later requests pay off: it waits, it never fails.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

# Pace this fraction below a stated limit: absorbs clock jitter and window alignment.
SAFETY_MARGIN = 0.02


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

    def reserve(self, amount: float = 1.0) -> float:
        """Reserve `amount` permits; returns the seconds to wait before using them."""
        now = self._clock()
        tau = self._burst / self._rate
        cost = amount / self._rate
        start = max(now, self._tat + min(cost, tau) - tau)
        self._tat = max(self._tat, start) + cost
        return start - now

    def refund(self, amount: float) -> None:
        """Give back permits reserved but not used (a request's unused token reservation)."""
        if amount > 0:
            self._tat = max(self._clock(), self._tat - amount / self._rate)


class ProviderLimiter:
    """Everything that gates sending to one provider: rpm, tpm and the 429 cool-down."""

    def __init__(
        self,
        *,
        requests_per_minute: float | None,
        tokens_per_minute: float | None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self.requests = _pacer(requests_per_minute, clock, burst_seconds=0.0)
        # Tokens: a burst of 0.2 s of rate, what the safety margin absorbs over a 10 s window.
        self.tokens = _pacer(tokens_per_minute, clock, burst_seconds=0.2)
        self._cooldown_until = 0.0
        # What callers are waiting on right now, for the progress line.
        self.waiting = {"cooldown": 0, "requests": 0, "tokens": 0}

    async def acquire(self, tokens: int) -> None:
        """Wait until one request reserving `tokens` may be sent."""
        await self._wait_cooldown()
        if self.requests is not None:
            await self._wait("requests", self.requests.reserve(1.0))
        if self.tokens is not None and tokens > 0:
            await self._wait("tokens", self.tokens.reserve(float(tokens)))
        # A 429 seen while we waited pauses us too.
        await self._wait_cooldown()

    def settle(self, reserved: int, used: int | None) -> None:
        """Return the unused part of a token reservation once real usage is known."""
        if self.tokens is not None and used is not None and used < reserved:
            self.tokens.refund(float(reserved - used))

    def cool_down(self, seconds: float) -> None:
        """Pause every request to this provider for `seconds` (a 429's Retry-After)."""
        self._cooldown_until = max(self._cooldown_until, self._clock() + seconds)

    async def _wait_cooldown(self) -> None:
        while (delay := self._cooldown_until - self._clock()) > 0:
            await self._wait("cooldown", delay)

    async def _wait(self, what: str, delay: float) -> None:
        if delay <= 0:
            return
        self.waiting[what] += 1
        try:
            await self._sleep(delay)
        finally:
            self.waiting[what] -= 1


def _pacer(per_minute: float | None, clock: Clock, *, burst_seconds: float) -> Pacer | None:
    if per_minute is None:
        return None
    rate = per_minute * (1.0 - SAFETY_MARGIN) / 60.0
    return Pacer(rate, burst=max(1.0, rate * burst_seconds), clock=clock)
