"""What the latest answers of one provider say: is a bad share far above what is usual here?

Every attempt ends in one of three kinds: answered, rate limited (429), or trouble (5xx, 529,
resets, timeouts, malformed bodies). `Outcomes` keeps the kinds of the latest attempts and, for
each bad kind, its *floor*: the share seen over a long memory of attempts. Noise is a floor: a
gateway that answers 5% of requests with a 429 whatever we do has a floor of 5%, and 5% of the
latest answers being 429s is no news. A limit is a jump: a quota that is spent refuses what
arrives above it, so the share of the latest answers leaps far above the floor.

Two tests, both as the chance that the floor alone would have produced what was just seen:

    surprise(kind)   the count of `kind` among the last 10 and the last 100 attempts
                     (binomial tail at the floor, the smaller of the two, times two)
    run_chance(kind) the last n attempts were all `kind`: floor ** n

A run catches a window's quota running out (everything refused from then on) within two or
three attempts; the share catches a limit crossed by a little, which refuses a few percent.
Runs are counted in the order attempts were *sent* (each carries its sequence number): a run
is a block of consecutive sends that all came back refused. In the order of arrival it would
be a fake: a 429 comes back at once while the answers to requests sent beside it take the
model's time, so under plain noise the 429s of a few milliseconds arrive side by side.
"""

from __future__ import annotations

import math
from collections import deque

RATE_BUCKET_S = 0.5
RATE_BUCKETS = 4  # rates are measured over the last two seconds

ANSWERED, RATE_LIMITED, TROUBLE = 0, 1, 2
UNAVAILABLE = 3  # trouble that says the provider cannot be reached at all: for runs only
_KINDS = 3
SCALES = (10, 100)  # attempts: the short scale reacts, the long one sees small excess shares
FLOOR_MEMORY = 1000.0  # attempts: the floor forgets older ones with this time constant
# Before anything is seen, the floor is what this many attempts with this share would give: a
# provider is assumed clean, but not so sure that the first two 429s of a noisy one look like
# a jump.
PRIOR_ATTEMPTS = 50.0
PRIOR_SHARE = 0.02
_DECAY = 1.0 - 1.0 / FLOOR_MEMORY
RUN_MEMORY = 32  # bad sends remembered per kind: runs longer than this count as this long


class Outcomes:
    """The kinds of one provider's latest attempts, and the usual share of each bad kind."""

    __slots__ = ("_bad_seqs", "_counts", "_floor_bad", "_floor_n", "_held", "_learnable",
                 "_ring")

    def __init__(self) -> None:
        self._ring: deque[int] = deque(maxlen=SCALES[-1])
        # _counts[i][kind]: how many of the last SCALES[i] attempts were of that kind.
        self._counts = [[0] * _KINDS for _ in SCALES]
        self._floor_n = 0.0
        self._floor_bad = [0.0] * _KINDS
        self._held = 0  # outcomes still to come that the floor must not learn
        self._learnable = True  # whether the latest outcome added may be learned
        # Per bad kind (and UNAVAILABLE): send sequence numbers of its latest attempts.
        self._bad_seqs: list[deque[int]] = [deque(maxlen=RUN_MEMORY) for _ in range(_KINDS + 1)]

    def add(
        self, kind: int, seq: int, *, recent: bool = True, unavailable: bool = False
    ) -> None:
        """Count one finished attempt of `kind`, sent as number `seq`, in the recent windows.

        With `recent` false it counts in runs only: an attempt sent long ago (a timeout
        arriving after many later ones were answered) says little about the provider now.
        `unavailable` trouble (refused, reset, timed out, 503, 529) also counts in the runs
        of UNAVAILABLE, which tell a provider that is down.
        """
        self._learnable = not self._held
        if self._held:
            self._held -= 1
        if kind:
            self._bad_seqs[kind].append(seq)
        if unavailable:
            self._bad_seqs[UNAVAILABLE].append(seq)
        if not recent:
            return
        ring = self._ring
        filled = len(ring)
        for scale, counts in zip(SCALES, self._counts, strict=True):
            if filled >= scale:
                counts[ring[-scale]] -= 1  # leaves this scale's window as the new one enters
            counts[kind] += 1
        ring.append(kind)

    def hold(self, outcomes: int) -> None:
        """Learn nothing from the next `outcomes` added: they are judged against the floor."""
        self._held = outcomes

    def learn(self, kind: int, *, anyway: bool = False) -> None:
        """Count the latest attempt, of `kind`, in the floor: the caller judged it usual.

        Nothing while held (see `hold`), unless `anyway`.
        """
        if not (self._learnable or anyway):
            return
        self._floor_n = self._floor_n * _DECAY + 1.0
        bad = self._floor_bad
        bad[RATE_LIMITED] *= _DECAY
        bad[TROUBLE] *= _DECAY
        if kind:
            bad[kind] += 1.0

    def floor(self, kind: int) -> float:
        """The usual share of `kind` here: its decayed share of all attempts, with the prior."""
        share = (PRIOR_SHARE * PRIOR_ATTEMPTS + self._floor_bad[kind]) / (
            PRIOR_ATTEMPTS + self._floor_n
        )
        return min(share, 0.999)

    def recent(self, kind: int, scale: int = 0) -> tuple[int, int]:
        """(count of `kind`, attempts) in the window of SCALES[scale]."""
        return self._counts[scale][kind], min(len(self._ring), SCALES[scale])

    def longest(self, kind: int) -> tuple[int, int]:
        """(count of `kind`, attempts) in the longest recent window that has filled."""
        count, seen = self.recent(kind, 1)
        return (count, seen) if seen >= SCALES[1] else self.recent(kind, 0)

    def surprise(self, kind: int) -> float:
        """The chance that the floor alone gives as many `kind` in the last 10 or 100 attempts."""
        p = self.floor(kind)
        best = 1.0
        for index, scale in enumerate(SCALES):
            count, seen = self.recent(kind, index)
            # The long scale speaks only once it is full: a half-full one is the short one again.
            if seen < (3 if index == 0 else scale):
                continue
            best = min(best, binomial_tail(seen, count, p))
        return min(1.0, best * len(SCALES))

    def run(self, kind: int) -> int:
        """How many consecutive sends, up to the latest of `kind`, were all of `kind`."""
        seqs = self._bad_seqs[kind]
        if not seqs:
            return 0
        seen = set(seqs)
        length, seq = 0, max(seqs)
        while seq in seen:  # a send missing from the block was answered, or is still out
            length += 1
            seq -= 1
        return length

    def run_chance(self, kind: int) -> float:
        """The chance that the floor alone gives the current run of `kind`."""
        share = self.floor(TROUBLE if kind == UNAVAILABLE else kind)
        return float(share ** self.run(kind))

    def absorb_recent(self) -> None:
        """Teach the floor what the long window holds: it was shown to be the usual state."""
        for kind in self._ring:
            self.learn(kind, anyway=True)
        self._held = 0

    def forget_recent(self) -> None:
        """Start the short-term windows afresh (after acting on them); the floor stays."""
        self._ring.clear()
        for counts in self._counts:
            counts[:] = [0] * _KINDS
        for seqs in self._bad_seqs:
            seqs.clear()


class Cycle:
    """Answers since the last pause, to measure what a spent window let through.

    The measure counts the pause the provider asks for: 200 answers in 3 s, then a 7 s wait,
    read as 20/s. Answers to requests sent before the measure that arrive after it (with a
    model's latency, many do) got through in that cycle too, and are added to it.
    """

    __slots__ = ("answers", "late_weight", "start")

    def __init__(self) -> None:
        self.start: float | None = None
        self.answers = 0
        self.late_weight = 0.0  # per late answer, what it adds to the last measure

    def answered(self, now: float, late: bool) -> float:
        """Count an answer; for a `late` one, return what it adds to the last measure."""
        if self.start is None:
            self.start = now
        if late:
            return self.late_weight
        self.answers += 1
        return 0.0

    def measure(self, now: float, pause: float, least: int) -> float | None:
        """Answers per second over the cycle and the coming pause; None below `least`."""
        if self.start is None or self.answers < least:
            return None
        span = now - self.start + pause
        self.late_weight = 1.0 / span
        return self.answers / span

    def restart(self, at: float) -> None:
        """A new cycle from `at` (the end of a pause); late answers add nothing yet."""
        self.start, self.answers, self.late_weight = at, 0, 0.0


class Rates:
    """Attempts and answers finished per second over the last two seconds."""

    __slots__ = ("_buckets", "_first")

    def __init__(self) -> None:
        self._buckets: deque[list[int]] = deque(maxlen=RATE_BUCKETS)  # [bucket, attempts, ok]
        self._first: float | None = None

    def add(self, now: float, answered: bool) -> None:
        """Count one finished attempt."""
        if self._first is None:
            self._first = now
        bucket = int(now / RATE_BUCKET_S)
        buckets = self._buckets
        if buckets and buckets[-1][0] == bucket:
            last = buckets[-1]
            last[1] += 1
            last[2] += answered
        else:
            buckets.append([bucket, 1, int(answered)])

    def age(self, now: float) -> float:
        """Seconds since the first outcome."""
        return 0.0 if self._first is None else now - self._first

    def rates(self, now: float) -> tuple[float, float]:
        """(attempts/s, answers/s) over the last two seconds, or since the first outcome."""
        current = int(now / RATE_BUCKET_S)
        recent = [b for b in self._buckets if current - b[0] < RATE_BUCKETS]
        if not recent or self._first is None:
            return 0.0, 0.0
        # Early on, over the time outcomes have been arriving: a span mostly before the first
        # one would read too low.
        first = max(recent[0][0] * RATE_BUCKET_S, self._first)
        span = max(RATE_BUCKET_S / 10, min(now - first, RATE_BUCKETS * RATE_BUCKET_S))
        return sum(b[1] for b in recent) / span, sum(b[2] for b in recent) / span


class Achieved:
    """Answers and their tokens per second over the last ten whole seconds: what is shown."""

    __slots__ = ("_first", "_seconds")

    def __init__(self) -> None:
        self._seconds: dict[int, tuple[int, int]] = {}  # second -> (answers, tokens)
        self._first: float | None = None

    def add(self, now: float, tokens: int) -> None:
        """Count one answer that used `tokens`."""
        second = int(now)
        if self._first is None:
            self._first = float(second)
        count, used = self._seconds.get(second, (0, 0))
        self._seconds[second] = (count + 1, used + tokens)
        if len(self._seconds) > 20:
            for old in [s for s in self._seconds if s < second - 10]:
                del self._seconds[old]

    def per_minute(self, now: float) -> tuple[float, float]:
        """(answers, tokens) per minute; early on, over the time answers have been coming."""
        second = int(now)
        span = 0.0 if self._first is None else min(10.0, second - self._first)
        if span <= 0:
            return 0.0, 0.0
        window = [v for s, v in self._seconds.items() if second - 10 <= s < second]
        return (sum(c for c, _ in window) * 60.0 / span, sum(t for _, t in window) * 60.0 / span)


def clearly_lower(before: tuple[int, int], after: tuple[int, int]) -> bool:
    """Whether the share after (count, of attempts) is clearly below the share before.

    One-sided two-proportion z-test at about 1%: the rate was cut between the two, and a share
    that a cut does not lower does not depend on the rate.
    """
    (k1, n1), (k2, n2) = before, after
    pooled = (k1 + k2) / (n1 + n2)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return spread > 0 and (k1 / n1 - k2 / n2) / spread > 2.33


def binomial_tail(n: int, k: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    q = 1.0 - p
    # Summed upwards from k: the terms shrink fast, and no 1 - (almost 1) loses precision.
    term = math.comb(n, k) * p**k * q ** (n - k)
    total = 0.0
    for i in range(k, n + 1):
        total += term
        if term < total * 1e-12:
            break
        term *= (n - i) / (i + 1) * p / q
    return min(1.0, total)
