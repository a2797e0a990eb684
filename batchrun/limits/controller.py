"""The pace of one provider, set from evidence: a limit is obeyed, noise is left to retries.

Every finished attempt is reported to `Controller`: answered, rate limited (a 429, with its
Retry-After and what its rate-limit headers said), or trouble (5xx, 529, reset, timeout,
malformed body). Each bad one gets a verdict:

    NOISE     the usual share of failures here: only this request waits (its Retry-After, then
              a retry, as the retry policy does); nobody else slows down
    LIMIT     a quota is spent: the provider pauses for the Retry-After, the pace is set just
              under what the provider was seen to let through, concurrency is halved
    OVERLOAD  a burst of 5xx or 529 (or of 429s while the headers show quota left): concurrency
              halved, a pause only if the provider asked for one
    DOWN      nothing but refusals, resets, timeouts, 503s or 529s: a pause that doubles while
              the probes fail, one request at a time until an answer comes. Other 5xx and
              malformed bodies come from a provider that is there; they never stall the run.

The evidence, in the order it is weighed: (1) the headers: a 429 with a quota at or near zero
is a LIMIT at once, one with plenty left is an upstream's, at most OVERLOAD; (2) the 429s among
the latest attempts against the usual share here (`evidence.Outcomes`): a spent window refuses
everything from then on, so a run of 429s the usual share makes unlikely (two to four in a row)
is a LIMIT, and a limit crossed by a little refuses a few percent, so an unlikely share of the
last 10 or 100 attempts is one too; (3) the Retry-After: a long one (LONG_WAIT_S) is what a
spent window says, and less else is needed; (4) the class: a 529 is never the key's limit.

Noise is flat whatever the rate: its share becomes the floor, never a jump, so 5% of 429s all
run long is learned as that provider's normal state. Outcomes just after a cut, or while probing
above a known ceiling, do not teach the floor (there, 429s are the limit's), and a cut whose
share of failures does not fall at the lower rate is undone, its share learned as noise
(`climb.Trial`). A LIMIT measures the ceiling, what got through: since the last pause and over
the pause it asks for after a run (`evidence.Cycle`), the rate of answers lately after a share.
With no limit known at all, the pace slow-starts from a modest rate up to the first clear limit
signal, and climbs back the same way after a cut (`climb.Pace`); concurrency is cut by the same
verdicts and regrows like a TCP window (`climb.Window`). Outcomes of attempts sent before a
verdict were in flight when it was made and are not evidence again. The clock is injected.
"""

from __future__ import annotations

import enum

from batchrun.limits.climb import Pace, Trial, Window
from batchrun.limits.evidence import (
    ANSWERED,
    RATE_LIMITED,
    SCALES,
    TROUBLE,
    UNAVAILABLE,
    Cycle,
    Outcomes,
    Rates,
)
from batchrun.limits.pacing import Clock

ALPHA = 1e-4  # a share of 429s this unlikely at the usual share is a jump
RUN_FACTOR = 0.1  # ... a run of them must be this much less likely still
ALPHA_LONG_WAIT = 1e-3  # ... or these, when the Retry-After is long
LONG_WAIT_S = 10.0
ALPHA_TROUBLE = 1e-5  # 5xx are common noise, and a burst of them is less urgent than a limit
MIN_RUN = 2  # never fewer 429s in a row than this make a run
MIN_DOWN_RUN = 4  # ... failures in a row, for DOWN
MIN_ESTIMATE_ANSWERS = 20  # answers since the last pause needed to measure a spent window
MEASURE_S = 1.0  # outcomes must have been arriving this long to take a rate from them
SUSPICIOUS = 1e-2  # failures this unlikely at the usual share are not taught to it
# After a verdict, this many outcomes are judged against the floor as it was: if the provider
# still refuses more than it used to at the new pace, the limit is lower still, which the floor
# must not learn to call normal.
WATCH = 200
COMPARE = 50  # attempts needed on each side to tell whether a cut lowered the share of 429s
DOWN_PAUSE_MAX_S = 30.0


class Verdict(enum.Enum):
    """What one failed attempt says about the provider."""

    NOISE = "noise"
    LIMIT = "limit"
    OVERLOAD = "overload"
    DOWN = "down"


class Controller:
    """Sets one provider's pace, concurrency and pauses from its outcomes (see module doc)."""

    def __init__(self, *, max_concurrency: int, clock: Clock, max_pause_s: float = 300.0) -> None:
        self._clock = clock
        self.max_pause_s = max_pause_s
        self.outcomes = Outcomes()
        self.rates = Rates()
        self.pace = Pace(max_concurrency)
        self.window = Window(max_concurrency)
        self.pause_until = float("-inf")
        self.why = ""  # the latest verdict's reason, for the progress line
        self.verdicts = dict.fromkeys(Verdict, 0)
        self.acted = 0  # verdicts so far: a change tells waiters to queue again
        self._seq = 0
        self._acted_seq = 0
        self._cycle = Cycle()
        self._down_pause = 0.0
        self._trial: Trial | None = None  # the latest cut on a share, until judged

    # --- what happened ------------------------------------------------------------------------

    def sent(self) -> int:
        """Number the next attempt let go (its place in the order of sending)."""
        self._seq += 1
        return self._seq

    def paced(self) -> None:
        """A request waited for the pace: it is what holds requests back, so it may grow."""
        self.pace.paced = True

    def answered(self, sent_at: float | None = None, seq: int | None = None) -> None:
        """An attempt sent at `sent_at` (the same clock) as number `seq` was answered."""
        now = self._clock()
        sent = now if sent_at is None else sent_at
        seq = self.sent() if seq is None else seq
        self.outcomes.add(ANSWERED, seq)
        if not self._probing():
            self.outcomes.learn(ANSWERED)
        self.rates.add(now, True)
        self.pace.round_trip_s += (now - sent - self.pace.round_trip_s) * 0.05
        late = self._cycle.answered(now, late=seq <= self._acted_seq)
        if late and self.pace.ceiling is not None:
            self.pace.under(self.pace.ceiling + late)
        self._down_pause = 0.0
        self.window.answered()
        self._tick(now)

    def rate_limited(
        self, retry_after: float | None, fallback_s: float, quota: str | None = None,
        seq: int | None = None,
    ) -> Verdict:
        """A 429 of the attempt sent as number `seq`; `quota` is what its headers said:
        "spent", "plenty" or None (nothing)."""
        now = self._clock()
        if (seq := self._fresh(now, seq)) is None:
            return Verdict.NOISE  # in flight when we acted: already taken into account
        outcomes = self.outcomes
        outcomes.add(RATE_LIMITED, seq)
        wait = fallback_s if retry_after is None else retry_after
        if quota == "spent":
            return self._limit(now, wait, hard=True, why="the headers say the quota is spent")
        run = outcomes.run(RATE_LIMITED)
        # A long Retry-After is what a spent window says: less else is needed to believe it.
        alpha = ALPHA_LONG_WAIT if wait >= LONG_WAIT_S else ALPHA
        chance = outcomes.run_chance(RATE_LIMITED) if run >= MIN_RUN else 1.0
        hard = chance < alpha * RUN_FACTOR
        surprise = 1.0 if hard else outcomes.surprise(RATE_LIMITED)
        if not hard and surprise >= alpha:
            self._learn(RATE_LIMITED, min(chance, surprise))
            self._tick(now)
            return Verdict.NOISE
        if quota == "plenty":
            return self._overload(now, wait, "429s while the headers show quota left", None)
        if not self._cut_lowered_share(RATE_LIMITED):
            return Verdict.NOISE
        if hard:
            return self._limit(now, wait, hard=True, why=f"{run} 429s in a row")
        return self._limit(now, wait, hard=False, why=self._share(RATE_LIMITED, "429s"))

    def failed(
        self, retry_after: float | None, fallback_s: float, in_flight: int | None = None,
        seq: int | None = None, *, unavailable: bool = False,
    ) -> Verdict:
        """A 5xx, 529, reset, timeout or malformed body of the attempt sent as number `seq`;
        `in_flight`: attempts still out.

        `unavailable`: the kind that says the provider is not there (refused, reset, timed
        out, 503, 529), which alone can make a DOWN.
        """
        now = self._clock()
        if (seq := self._fresh(now, seq)) is None:
            return Verdict.NOISE
        outcomes = self.outcomes
        # A failure sent a whole long window of sends ago (a timeout, typically) counts for
        # runs, in the order of sending, but not in the shares of the latest attempts: hangs
        # that began over the run's first seconds all time out together, twenty seconds on.
        outcomes.add(TROUBLE, seq, recent=seq > self._seq - SCALES[-1], unavailable=unavailable)
        run = outcomes.run(UNAVAILABLE) if unavailable else 0
        if unavailable and (self._down_pause or (
                run >= MIN_DOWN_RUN and outcomes.run_chance(UNAVAILABLE) < ALPHA_TROUBLE)):
            wait = fallback_s if retry_after is None else max(retry_after, fallback_s)
            return self._down(now, wait, run)
        surprise = outcomes.surprise(TROUBLE)
        if surprise >= ALPHA_TROUBLE:
            self._learn(TROUBLE, surprise)
            self._tick(now)
            return Verdict.NOISE
        if not self._cut_lowered_share(TROUBLE):
            return Verdict.NOISE
        # No pause unless asked for: the provider answers, and a run whose requests all fail
        # must still end, each row recorded.
        wait = 0.0 if retry_after is None else retry_after
        return self._overload(now, wait, self._share(TROUBLE, "failures"), in_flight)

    # --- what to do about it --------------------------------------------------------------------

    def _limit(self, now: float, wait: float, *, hard: bool, why: str) -> Verdict:
        pause = min(max(wait, 0.0), self.max_pause_s)
        trial = Trial.of(RATE_LIMITED, self.outcomes.longest(RATE_LIMITED), self.pace, self.window)
        hit = self.pace.hit(self.rates.rates(now)[0])
        # A run: a window's quota is spent, and what got through over the window tells its
        # limit (`Cycle`). A share: a limit refuses what exceeds it, lately.
        ceiling = self._cycle.measure(now, pause, MIN_ESTIMATE_ANSWERS) if hard else None
        late_weight = self._cycle.late_weight if ceiling is not None else 0.0
        if ceiling is None and self.rates.age(now) >= MEASURE_S:
            # What gets through lately: a limit refusing what exceeds it leaves its own rate as
            # the rate of answers (under noise this cuts by the noise's share: the safe side).
            ceiling = self.rates.rates(now)[1] or None
        if ceiling is None:
            self.pace.halve(hit)
        else:
            self.pace.under(min(ceiling, hit))
        self.window.halve()
        found = f"; ceiling now {self.pace.ceiling:.1f}/s" if self.pace.ceiling else ""
        self._act(now, pause, Verdict.LIMIT, f"rate limit: {why} at {hit:.1f}/s{found}")
        self._cycle.late_weight = late_weight
        if not hard and trial.share[1] >= COMPARE:
            self._trial = trial
        return Verdict.LIMIT

    def _overload(self, now: float, wait: float, why: str, in_flight: int | None) -> Verdict:
        # Concurrency only: what an overloaded server needs is fewer requests at once, and a
        # pace halved again at each burst would shrink to nothing while nothing is answered.
        trial = Trial.of(TROUBLE, self.outcomes.longest(TROUBLE), self.pace, self.window)
        self.window.overload(in_flight)
        self._act(now, min(wait, self.max_pause_s), Verdict.OVERLOAD, f"overloaded: {why}")
        # Always on trial, even after a few failures: a provider failing every request fails
        # as much at one request at a time, and then the cut only slows the run to its end.
        self._trial = trial
        return Verdict.OVERLOAD

    def _down(self, now: float, wait: float, run: int) -> Verdict:
        self._down_pause = min(max(wait, 2 * self._down_pause), DOWN_PAUSE_MAX_S,
                               self.max_pause_s)
        self.window.probe()
        self._act(now, self._down_pause, Verdict.DOWN,
                  f"provider down: {run} failures in a row; one probe at a time")
        return Verdict.DOWN

    def _act(self, now: float, pause: float, verdict: Verdict, why: str) -> None:
        self.verdicts[verdict] += 1
        self.acted += 1
        self.why = why
        self._acted_seq = self._seq
        self.pause_until = max(self.pause_until, now + pause)
        self.outcomes.hold(WATCH)
        self._cycle.restart(self.pause_until)
        self.pace.cut_since_step = True
        self._trial = None
        self.outcomes.forget_recent()

    def _tick(self, now: float) -> None:
        # The climb goes on while the evidence stays clean: answers, and failures that are
        # noise (a provider failing every request must not hold its pace at the start's).
        self.pace.tick(now, paused=now < self.pause_until, sending=lambda: self.rates.rates(now)[0])

    # --- what is measured ---------------------------------------------------------------------

    def _fresh(self, now: float, seq: int | None) -> int | None:
        """Count a failed attempt; its number, or None if it was sent before the last verdict."""
        self.rates.add(now, False)
        seq = self.sent() if seq is None else seq
        return None if seq <= self._acted_seq else seq

    def _probing(self) -> bool:
        """Above a known ceiling, 429s are what is probed for: the floor must not learn them."""
        ceiling, rate = self.pace.ceiling, self.pace.rate
        return ceiling is not None and rate is not None and rate > ceiling

    def _learn(self, kind: int, chance: float) -> None:
        # A failure that is part of something unusual brewing (short of a verdict) is not
        # taught to the floor either: a limit being crossed would otherwise raise the floor
        # with its first 429s, and hide behind it.
        if chance >= SUSPICIOUS and not self._probing():
            self.outcomes.learn(kind)

    def _cut_lowered_share(self, kind: int) -> bool:
        """After a cut on a share of `kind`, whether the share fell with the rate (or no cut).

        Noise stays flat whatever the rate: if the share at the lower pace is not clearly
        below the one that prompted the cut, it is the usual state here. The floor learns it
        and the cut is undone.
        """
        trial = self._trial
        if trial is None or trial.kind != kind:
            return True
        lowered = trial.lowered(self.outcomes.longest(kind), COMPARE)
        if lowered is not False:
            return bool(lowered)  # None: too soon to tell, and nothing more is cut meanwhile
        self.outcomes.absorb_recent()
        trial.undo(self.pace, self.window)
        self._trial = None
        what = "429s" if kind == RATE_LIMITED else "failures"
        self.why = f"{what} that a lower rate did not lower: noise, the cut undone"
        return False

    def _share(self, kind: int, what: str) -> str:
        count, seen = self.outcomes.longest(kind)
        return f"{count} {what} in the last {seen}"

    def describe(self) -> str:
        """Why requests wait, if they do: the pause and its reason, or the pace and its origin."""
        now = self._clock()
        if now < self.pause_until:
            return f"cool-down {self.pause_until - now:.1f}s, {self.why}"
        parts = [self.pace.describe()]
        if self.window.size < self.window.maximum:
            parts.append(f"concurrency regrowing after: {self.why}")
        noise = self.outcomes.floor(RATE_LIMITED)
        if noise >= 0.01:
            parts.append(f"429s as noise {noise:.0%}")
        return ", ".join(p for p in parts if p)
