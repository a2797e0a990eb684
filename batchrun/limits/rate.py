"""One paced resource (requests, or tokens): the job's ceiling, the limit the provider states,
and the pace the controller sets from evidence (`limits.controller`)."""

from __future__ import annotations

from batchrun.limits.pacing import Clock, Pacer

MIN_RATE = 0.1  # per second: a cut never pauses a provider for longer than ten seconds
SAFETY_MARGIN = 0.02  # pace this fraction under a known limit: jitter at a window's edge


class AdaptiveRate:
    """One paced resource: a ceiling from the job, a limit learned from headers, a set pace."""

    def __init__(self, ceiling_per_min: float | None, clock: Clock, burst_s: float) -> None:
        self.ceiling = ceiling_per_min / 60.0 if ceiling_per_min else None
        self.learned: float | None = None
        self.controlled: float | None = None  # per second, set by the controller; None: none
        self.pacer: Pacer | None = None
        self._clock = clock
        self._burst_s = burst_s
        self._apply()

    @property
    def limit(self) -> float | None:
        """Per second: the tighter of the ceiling and what the provider stated."""
        known = [r for r in (self.ceiling, self.learned) if r]
        return min(known) if known else None

    def learn(self, per_minute: float) -> None:
        """Adopt the per-minute limit a response's headers stated."""
        if per_minute > 0 and per_minute / 60.0 != self.learned:
            self.learned = per_minute / 60.0
            self._apply()

    def control(self, rate: float | None) -> None:
        """Pace at `rate` per second at most (None: only the ceiling and stated limit count)."""
        if rate != self.controlled:
            self.controlled = rate
            self._apply()

    def _apply(self) -> None:
        limit = self.limit
        rates = [r * (1 - SAFETY_MARGIN) for r in (limit,) if r] + [
            r for r in (self.controlled,) if r
        ]
        if not rates:
            self.pacer = None
            return
        rate = min(rates)
        if self.pacer is None:
            burst = max(1.0, rate * self._burst_s)
            self.pacer = Pacer(rate, burst=burst, clock=self._clock)
        elif rate != self.pacer.rate:
            self.pacer.set_rate(rate)
