"""How fast we go on our own account: the pace we set (`Pace`) and the concurrency (`Window`).

Both are cut by the controller's verdicts (`limits.controller`) and climb back while answers
keep coming, the way TCP climbs: multiplicatively while far from where it last hurt, then in
small steps near it.

`Pace` is the request rate when the job and the headers state no limit (or one the provider
does not keep). It slow-starts, doubling per step while it is what holds requests back; once
far above what is sent, it is dropped (nothing left to find under it). A ceiling, once found,
is approached by doubling up to just under it, then passed in steps of ADD_STEP of it per
second, so a limit that rises is followed; one passed by FORGET_ABOVE without a complaint is
forgotten and the slow start resumes.

`Window` is the number of requests in flight: one more per answer up to its threshold, then one
more per window of answers.

`Trial` keeps what a cut undoes, and the share of failures that prompted it: noise stays flat
whatever the rate, so a share that the cut did not lower says the cut was a mistake.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from batchrun.limits.evidence import clearly_lower
from batchrun.limits.rate import MIN_RATE, SAFETY_MARGIN

# The pace steps every two round trips (TCP: every one): by then the evidence of the last step
# is in. Bounded, so a loopback does not double fifty times a second and a slow model grows.
STEP_MIN_S = 0.1
STEP_MAX_S = 1.0
START_RATE_PER_SLOT = 2.0  # requests/s per slot to begin with: answers in half a second
MIN_START_RATE = 4.0
UNPACED_ABOVE = 2.0  # a slow start this far above what is sent is over
ADD_STEP = 0.002  # near the ceiling, climb this fraction of it per second
FORGET_ABOVE = 1.1
CUT = 0.5  # the cut when nothing better is known


class Pace:
    """Our own pace (`rate`, per second; None: none) and the `ceiling` it was last cut from."""

    __slots__ = ("ceiling", "cut_since_step", "known", "last_step", "paced", "rate",
                 "round_trip_s")

    def __init__(self, slots: int) -> None:
        self.rate: float | None = max(MIN_START_RATE, START_RATE_PER_SLOT * slots)
        self.ceiling: float | None = None
        self.known: float | None = None  # per second, stated by the job or the headers
        self.round_trip_s = STEP_MIN_S / 2  # moving average of answers' latency
        self.paced = False  # a request waited for the pace since the last step
        self.cut_since_step = False
        self.last_step: float | None = None

    def tick(self, now: float, *, paused: bool, sending: Callable[[], float]) -> None:
        """Take a step of the climb if one is due; `sending`: attempts per second lately."""
        if self.last_step is None:
            self.last_step = now
            return
        if now - self.last_step < min(STEP_MAX_S, max(STEP_MIN_S, 2 * self.round_trip_s)):
            return
        elapsed, self.last_step = now - self.last_step, now
        paced, self.paced = self.paced, False
        if self.cut_since_step or paused:
            self.cut_since_step = False  # nothing grows in the step after a cut
            return
        self.grow(elapsed, paced, sending())

    def state(self, per_second: float | None) -> None:
        """The limit the job or the headers state; with nothing learned, it paces alone."""
        self.known = per_second
        if per_second is not None and self.ceiling is None:
            self.rate = None

    def effective(self) -> float | None:
        """The tighter of our pace and the stated limit's, per second."""
        paces = [r for r in (self.rate, self.known and self.known * (1 - SAFETY_MARGIN)) if r]
        return min(paces) if paces else None

    def hit(self, sending: float) -> float:
        """The rate a complaint came at: what was sent, at most the pace in force."""
        pace = self.effective()
        if pace is not None and (sending <= 0 or sending > pace):
            sending = pace  # early measurements run high: bursts over a short span
        return max(MIN_RATE, sending)

    def under(self, ceiling: float) -> None:
        """A ceiling was measured: pace just under it."""
        self.ceiling = max(MIN_RATE, ceiling)
        self.rate = max(MIN_RATE, self.ceiling * (1 - SAFETY_MARGIN))

    def halve(self, hit: float) -> None:
        """Nothing measured: halve, and climb back no higher than `hit`, where it hurt."""
        self.ceiling = hit
        self.rate = max(MIN_RATE, hit * CUT)

    def grow(self, elapsed: float, paced: bool, sending: float) -> None:
        """One step of the climb; `paced`: the pace held requests back; `sending`: per s."""
        rate, ceiling, known = self.rate, self.ceiling, self.known
        if rate is None:
            return
        if not paced:
            # Growing would only allow a burst later; a slow start far above what is sent has
            # nothing left to find.
            if ceiling is None and rate >= UNPACED_ABOVE * sending:
                self.rate = None
            return
        if ceiling is None or rate < ceiling * (1 - SAFETY_MARGIN):
            rate *= 2
            if ceiling is not None:
                rate = min(rate, ceiling * (1 - SAFETY_MARGIN))
        else:
            rate += ADD_STEP * ceiling * elapsed
            if rate > ceiling * FORGET_ABOVE:
                self.ceiling = None  # passed well above it without a complaint: stale
        if known is not None and rate >= known * (1 - SAFETY_MARGIN):
            self.rate = self.ceiling = None  # back up to the stated limit: it paces alone
        else:
            self.rate = rate

    def describe(self) -> str:
        """The pace and where it comes from, or "" when we set none."""
        if self.rate is None:
            return ""
        if self.ceiling is None:
            return f"slow start {self.rate:.1f}/s"
        return f"pace {self.rate:.1f}/s under a limit found at {self.ceiling:.1f}/s"


class Window:
    """How many requests may be in flight: cut by verdicts, regrown by answers."""

    __slots__ = ("maximum", "size", "threshold")

    def __init__(self, maximum: int) -> None:
        self.maximum = float(maximum)
        self.size = self.maximum
        self.threshold = self.maximum  # above it, the window grows slowly

    def answered(self) -> None:
        """One more slot per answer below the threshold, one per window of answers above."""
        if self.size < self.maximum:
            step = 1.0 if self.size < self.threshold else 1.0 / self.size
            self.size = min(self.maximum, self.size + step)

    def halve(self) -> None:
        """A limit: halve, and regrow fast (the pace, not the window, holds the rate)."""
        self.size = max(1.0, self.size * CUT)

    def overload(self, in_flight: int | None) -> None:
        """The provider is overloaded: half of what was out, and regrow slowly from there."""
        load = self.size if in_flight is None else min(self.size, in_flight)
        self.threshold = self.size = max(1.0, load * CUT)

    def probe(self) -> None:
        """The provider is down: one request at a time until an answer comes."""
        if self.size > 1:
            self.threshold = max(1.0, self.size * CUT)
        self.size = 1.0


@dataclass(frozen=True, slots=True)
class Trial:
    """A cut on trial: the share of `kind` (count, attempts) that prompted it, and the before."""

    kind: int
    share: tuple[int, int]
    rate: float | None
    ceiling: float | None
    size: float
    threshold: float

    @classmethod
    def of(cls, kind: int, share: tuple[int, int], pace: Pace, window: Window) -> Trial:
        """Remember the pace and window as they are, before the cut."""
        return cls(kind, share, pace.rate, pace.ceiling, window.size, window.threshold)

    def lowered(self, after: tuple[int, int], least: int) -> bool | None:
        """Whether the share after the cut is clearly below the one before it (None: with
        fewer than `least` attempts since, too soon to tell)."""
        return None if after[1] < least else clearly_lower(self.share, after)

    def undo(self, pace: Pace, window: Window) -> None:
        """Put the pace and window back as they were."""
        pace.rate, pace.ceiling = self.rate, self.ceiling
        window.size, window.threshold = self.size, self.threshold
