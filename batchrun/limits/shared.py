"""One provider's limits spent by several processes at once: leases of a shared schedule.

Shards of a run that share a provider's requests/min and tokens/min must together stay under
them. A central granter (`LeaseLedger`, behind a Ray actor in `batchrun.cluster.leases`) keeps
one evenly paced schedule per limited resource, `SAFETY_MARGIN` under the stated limit, and
hands out blocks of it: "these 5 requests, due evenly from 0.12 s from now". A shard holds its
blocks in `LeaseBlocks` and spends them as they come due, so it asks once per block, never
once per request.

A unit is spent no earlier than its place in the schedule and is dropped `GRACE_S` after it,
so however many shards hold blocks, the requests sent in any T seconds number at most
rate * (T + GRACE_S) + 1: the cluster stays under the limit as one process would. A shard that
lets units go stale asks for smaller blocks, so a slow shard does not hoard the schedule that a
busy one could use.

Tokens are reserved as `prompt + max_tokens`; what an answer did not use comes back as credit
(`give_back`), spent by the shard's next requests first. Credit is capped near one block and
one request, the rest goes back to the granter: a shard never sits on a burst.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from batchrun.limits.pacing import Clock
from batchrun.limits.rate import SAFETY_MARGIN

BLOCK_S = 0.25  # the largest block: a quarter second of the limit, a few asks per second
MIN_BLOCK_S = 0.02  # the smallest (or one unit): a shard asks at most ~50 times a second
GRACE_S = 0.05  # a unit not spent this long after it came due is dropped: no late bursts
_EPS = 1e-9

Sleep = Callable[[float], Awaitable[None]]


class Amounts(NamedTuple):
    """So many requests and tokens, in the order of `StatedLimits.paced`."""

    requests: float = 0.0
    tokens: float = 0.0
    input_tokens: float = 0.0
    output_tokens: float = 0.0


# Asked for `wanted` and given back `returned` (tokens reserved and not used), the granter
# answers per resource the seconds from now until the block it reserved for `wanted` comes due
# (0 for a resource it does not limit or was not asked for).
Granter = Callable[[Amounts, Amounts], Awaitable[Sequence[float]]]


class SharedLimit(Protocol):
    """What a `ProviderLimiter` asks of a limit shared with other processes."""

    async def take(self, need: Amounts) -> None:
        """Return once `need` may be spent; cancelled, it takes nothing."""

    def give_back(self, unused: Amounts) -> None:
        """Return what a `take` reserved and was not used (a negative amount charges more)."""


@dataclass(frozen=True, slots=True)
class StatedLimits:
    """One provider's stated limits per minute; None: not limited."""

    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    input_tokens_per_minute: float | None = None
    output_tokens_per_minute: float | None = None

    def paced(self) -> tuple[float | None, float | None, float | None, float | None]:
        """Per second and `SAFETY_MARGIN` under each limit, in `Amounts` order."""
        per_min = (self.requests_per_minute, self.tokens_per_minute,
                   self.input_tokens_per_minute, self.output_tokens_per_minute)
        paced = [m / 60.0 * (1 - SAFETY_MARGIN) if m else None for m in per_min]
        return paced[0], paced[1], paced[2], paced[3]

    @property
    def limited(self) -> bool:
        """Whether any resource is limited at all."""
        return any(self.paced())


class LeaseLedger:
    """The granter's side: one evenly paced schedule per limited resource.

    A block is placed at the end of its resource's schedule, or now if the schedule lies in
    the past: idle time is never banked, so blocks never add up to a burst.
    """

    def __init__(self, limits: StatedLimits, clock: Clock = time.monotonic) -> None:
        self.rates = limits.paced()
        self._clock = clock
        now = clock()
        self._ends = [now, now, now, now]
        self.granted = [0.0, 0.0, 0.0, 0.0]
        self.returned = [0.0, 0.0, 0.0, 0.0]
        self.asks = 0

    def grant(
        self, wanted: Sequence[float], returned: Sequence[float] = (0.0, 0.0, 0.0, 0.0)
    ) -> tuple[float, ...]:
        """Reserve `wanted` (in `Amounts` order); per resource, seconds until its block is due.

        `returned` first takes back tokens that answers did not use, as `Pacer.refund` does:
        later blocks may come earlier, never before now.
        """
        now = self._clock()
        self.asks += 1
        delays = []
        for i, (rate, amount) in enumerate(zip(self.rates, wanted, strict=True)):
            if rate is None:
                delays.append(0.0)
                continue
            if returned[i] > 0:
                self._ends[i] = max(now, self._ends[i] - returned[i] / rate)
                self.returned[i] += returned[i]
            if amount <= 0:
                delays.append(0.0)
                continue
            start = max(now, self._ends[i])
            self._ends[i] = start + amount / rate
            self.granted[i] += amount
            delays.append(start - now)
        return tuple(delays)


class _Block:
    """The unspent part of one granted block: units due evenly from `due` until `end`."""

    __slots__ = ("due", "end", "trimmed")

    def __init__(self, due: float, end: float) -> None:
        self.due = due
        self.end = end
        self.trimmed = False  # some of it came due and was not spent in time


class _Lane:
    """One limited resource as a shard holds it: its blocks, its credit, its block size."""

    __slots__ = ("blocks", "credit", "grace_s", "largest", "max_block", "min_block", "overflow",
                 "rate", "size", "whole")

    def __init__(
        self, rate: float, block_s: float, min_block_s: float, grace_s: float, *, whole: bool
    ) -> None:
        self.rate = rate
        self.grace_s = grace_s
        self.whole = whole  # requests come in whole units: a block of 4.9 would waste 0.9
        self.max_block = self._round(max(1.0, rate * block_s))
        self.min_block = min(self.max_block, self._round(max(1.0, rate * min_block_s)))
        self.size = self.max_block
        self.blocks: deque[_Block] = deque()
        self.credit = 0.0  # given back, spendable at once; negative: owed by the next take
        self.overflow = 0.0  # given back beyond what credit may hold: for the granter
        self.largest = 0.0  # the largest take so far: credit must hold one

    def add(self, due: float, amount: float) -> None:
        self.blocks.append(_Block(due, due + amount / self.rate))

    def trim(self, now: float) -> None:
        """Drop the units that came due more than `grace_s` ago."""
        horizon = now - self.grace_s
        blocks = self.blocks
        while blocks and blocks[0].due < horizon:
            block = blocks[0]
            block.trimmed = True
            if block.end > horizon:
                block.due = horizon
                return
            blocks.popleft()
            self._resize(block)

    def spend_due(self, amount: float, now: float) -> float:
        """Spend up to `amount` of the credit and of the blocks due by `now`; how much it was.

        A block that is due may be spent whole, even its units due later: a large request
        is let go when its first unit is due, the rest being its debt to the schedule (as
        `Pacer` does). A debt left by a give-back is paid first and does not count.
        """
        self.trim(now)
        self.largest = max(self.largest, amount)
        spent = 0.0
        if self.credit > 0:
            spent = min(self.credit, amount)
            self.credit -= spent
        blocks = self.blocks
        while blocks and blocks[0].due <= now and (spent < amount - _EPS or self.credit < 0):
            block = blocks[0]
            held = (block.end - block.due) * self.rate
            want = amount - spent - min(self.credit, 0.0)
            if held > want + _EPS:
                block.due += want / self.rate
                use = want
            else:
                blocks.popleft()
                self._resize(block)
                use = held
            if self.credit < 0:
                paid = min(-self.credit, use)
                self.credit += paid
                use -= paid
            spent += use
        return spent

    def next_due(self) -> float | None:
        """When the first block held comes due (None: none held)."""
        return self.blocks[0].due if self.blocks else None

    def ask(self, amount: float) -> float:
        """How much to ask the granter for so that `amount` is covered; 0: it is."""
        short = amount - self.credit - sum((b.end - b.due) * self.rate for b in self.blocks)
        return 0.0 if short <= _EPS else self._round(max(self.size, short))

    def give_back(self, amount: float) -> None:
        # Capped: credit is spent at once, so a large one would be a burst. The rest of the
        # tokens goes back to the granter; a request's lease (given back when a pause began
        # as it was taken) is not worth the risk of a late one and is dropped.
        credit, most = self.credit + amount, self.max_block + self.largest
        if credit > most:
            if not self.whole:
                self.overflow += credit - most
            credit = most
        self.credit = credit

    def take_overflow(self) -> float:
        overflow, self.overflow = self.overflow, 0.0
        return overflow

    def grow(self) -> None:
        """Ask for larger blocks: requests queue for more than the shard holds."""
        self.size = min(self.max_block, self.size * 2)

    def _resize(self, block: _Block) -> None:
        # Some of it went stale: the shard asks for more than it sends, smaller blocks.
        if block.trimmed:
            self.size = max(self.min_block, self._round(self.size / 2))

    def _round(self, amount: float) -> float:
        return float(math.ceil(amount - _EPS)) if self.whole else amount


class LeaseBlocks:
    """A shard's side of a shared limit (`SharedLimit`): blocks of it, spent as they come due.

    Requests wait their turn in order; the one at the head asks the granter when the blocks
    held do not cover it, so one ask serves a block's worth of requests.
    """

    def __init__(
        self,
        limits: StatedLimits,
        granter: Granter,
        *,
        block_s: float = BLOCK_S,
        min_block_s: float = MIN_BLOCK_S,
        grace_s: float = GRACE_S,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._lanes = tuple(
            None if rate is None else _Lane(rate, block_s, min_block_s, grace_s, whole=i == 0)
            for i, rate in enumerate(limits.paced())
        )
        self._granter = granter
        self._clock = clock
        self._sleep = sleep
        self._turn = asyncio.Lock()
        self._queued = 0  # requests waiting for their turn behind the one taking
        self.asks = 0

    async def take(self, need: Amounts) -> None:
        """Wait until the shared limits allow `need`, then spend it."""
        pending = [i for i, lane in enumerate(self._lanes) if lane is not None and need[i] > 0]
        if not pending:
            return
        self._queued += 1
        async with self._turn:
            self._queued -= 1
            left = list(need)
            try:
                await self._take(left, pending)
            except BaseException:
                # Cancelled halfway: what was already spent is this shard's credit again.
                self.give_back(Amounts(*(n - m for n, m in zip(need, left, strict=True))))
                raise

    async def _take(self, left: list[float], pending: list[int]) -> None:
        # What is due is spent at once, resource by resource and block by block: a unit held
        # back while waiting for another resource or block would go stale and be lost.
        while pending:
            now = self._clock()
            wait = float("inf")
            ask = [0.0, 0.0, 0.0, 0.0]
            for i in tuple(pending):
                lane = self._lane(i)
                left[i] -= lane.spend_due(left[i], now)
                if left[i] <= _EPS:
                    left[i] = 0.0
                    pending.remove(i)
                    continue
                ask[i] = lane.ask(left[i])
                if ask[i] and self._queued:  # more requests wait: this shard could use more
                    lane.grow()
                    ask[i] = lane.ask(left[i])
                due = lane.next_due()
                if due is not None:
                    wait = min(wait, due - now)
            if any(ask):
                self.asks += 1
                returned = Amounts(*(0.0 if lane is None else lane.take_overflow()
                                     for lane in self._lanes))
                delays = await self._granter(Amounts(*ask), returned)
                got = self._clock()  # the granter's "from now" began before this: we are late,
                for i, amount in enumerate(ask):  # the safe side
                    if amount > 0:
                        self._lane(i).add(got + delays[i], amount)
            elif pending:
                await self._sleep(wait)

    def give_back(self, unused: Amounts) -> None:
        """Credit what an attempt reserved and did not use; its next requests spend it first."""
        for lane, amount in zip(self._lanes, unused, strict=True):
            if lane is not None and amount:
                lane.give_back(amount)

    def _lane(self, i: int) -> _Lane:
        lane = self._lanes[i]
        assert lane is not None
        return lane
