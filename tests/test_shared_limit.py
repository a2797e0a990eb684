"""A limit shared by shards: the lease ledger and the shards' blocks, in virtual time, no Ray."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Awaitable, Coroutine, Sequence
from typing import Any

import pytest

from batchrun.limits import ProviderLimiter
from batchrun.limits.rate import SAFETY_MARGIN
from batchrun.limits.shared import (
    GRACE_S,
    Amounts,
    LeaseBlocks,
    LeaseLedger,
    StatedLimits,
)


class VirtualTime:
    """A clock and a sleep for many coroutines at once: time moves only when all of them wait."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._timers, (self.now + max(0.0, seconds), next(self._seq), future))
        await future

    async def run(self, *coros: Coroutine[Any, Any, None], until: float) -> None:
        """Run `coros` until they end or virtual time reaches `until`."""
        tasks = [asyncio.ensure_future(c) for c in coros]
        while not all(t.done() for t in tasks):
            for _ in range(50):  # let every coroutine that can run reach its next wait
                await asyncio.sleep(0)
            if not self._timers or self._timers[0][0] > until:
                break
            when, _, future = heapq.heappop(self._timers)
            self.now = when
            if not future.done():
                future.set_result(None)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for task in tasks:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]


def in_process(ledger: LeaseLedger) -> Any:
    """A granter that asks the ledger directly, as the Ray actor does across processes."""

    async def grant(wanted: Amounts, returned: Amounts) -> Sequence[float]:
        return ledger.grant(wanted, returned)

    return grant


def most_in_any_window(times: list[float], window: float) -> int:
    times = sorted(times)
    most, lo = 0, 0
    for hi, t in enumerate(times):
        while times[lo] <= t - window:
            lo += 1
        most = max(most, hi - lo + 1)
    return most


async def shard_worker(blocks: LeaseBlocks, clock: VirtualTime, sent: list[float],
                       latency_s: float = 0.01, every_s: float = 0.0) -> None:
    """One sender: take a request's lease, send (record the time), wait for the answer."""
    while True:
        await blocks.take(Amounts(requests=1))
        sent.append(clock.now)
        await clock.sleep(latency_s + every_s)


def test_the_ledger_lays_blocks_end_to_end_and_banks_no_idle_time() -> None:
    clock = VirtualTime()
    ledger = LeaseLedger(StatedLimits(requests_per_minute=600), clock=clock)
    rate = 10 * (1 - SAFETY_MARGIN)
    assert ledger.grant(Amounts(requests=5)) == (0.0, 0.0, 0.0, 0.0)
    assert ledger.grant(Amounts(requests=5))[0] == pytest.approx(5 / rate)
    assert ledger.grant(Amounts(requests=2))[0] == pytest.approx(10 / rate)
    clock.now += 60  # an idle minute is not a minute's worth of requests at once
    assert ledger.grant(Amounts(requests=5))[0] == 0.0
    assert ledger.grant(Amounts(requests=1))[0] == pytest.approx(5 / rate)
    # Resources it does not limit, or not asked for, are due at once.
    assert ledger.grant(Amounts(tokens=1000))[1] == 0.0


@pytest.mark.parametrize("shards", [2, 3])
def test_shards_sharing_a_limit_never_exceed_it_together_and_use_most_of_it(shards: int) -> None:
    rpm, window = 1200.0, 10.0  # 200 per 10 s, as a provider checks a per-minute limit
    clock = VirtualTime()
    ledger = LeaseLedger(StatedLimits(requests_per_minute=rpm), clock=clock)
    sent: list[float] = []
    blocks = [LeaseBlocks(StatedLimits(requests_per_minute=rpm), in_process(ledger),
                          clock=clock, sleep=clock.sleep) for _ in range(shards)]
    workers = [shard_worker(b, clock, sent) for b in blocks for _ in range(8)]
    start = clock.now
    asyncio.run(clock.run(*workers, until=start + 60))
    assert most_in_any_window(sent, window) <= rpm / 60 * window
    # A 2% margin, nothing lost between blocks or shards: >= 97% of the limit.
    assert len(sent) / 60 >= 0.97 * rpm / 60
    # Blocks, not a round trip per request.
    assert ledger.asks <= len(sent) / 3


def test_a_slow_shard_does_not_hoard_the_schedule_a_busy_one_could_use() -> None:
    rpm = 1200.0
    clock = VirtualTime()
    ledger = LeaseLedger(StatedLimits(requests_per_minute=rpm), clock=clock)
    limits = StatedLimits(requests_per_minute=rpm)
    busy = LeaseBlocks(limits, in_process(ledger), clock=clock, sleep=clock.sleep)
    slow = LeaseBlocks(limits, in_process(ledger), clock=clock, sleep=clock.sleep)
    busy_sent: list[float] = []
    slow_sent: list[float] = []
    start = clock.now
    asyncio.run(clock.run(
        *[shard_worker(busy, clock, busy_sent) for _ in range(8)],
        shard_worker(slow, clock, slow_sent, every_s=0.5),  # 2 requests a second
        until=start + 60,
    ))
    assert most_in_any_window(busy_sent + slow_sent, 10.0) <= 200
    assert len(slow_sent) >= 100  # the slow one got what it asked for
    assert (len(busy_sent) + len(slow_sent)) / 60 >= 0.95 * rpm / 60


def test_tokens_an_answer_did_not_use_are_spent_by_the_next_requests() -> None:
    clock = VirtualTime()
    limits = StatedLimits(tokens_per_minute=60_000)  # 980 tokens/s paced
    ledger = LeaseLedger(limits, clock=clock)
    blocks = LeaseBlocks(limits, in_process(ledger), clock=clock, sleep=clock.sleep)
    sent: list[float] = []

    async def worker() -> None:
        while True:
            await blocks.take(Amounts(requests=1, tokens=300))  # prompt + max_tokens
            sent.append(clock.now)
            await clock.sleep(0.05)
            blocks.give_back(Amounts(tokens=250))  # only 50 were used

    start = clock.now
    asyncio.run(clock.run(*[worker() for _ in range(4)], until=start + 30))
    # Paced by the 50 tokens used, not the 300 reserved: close to 980 / 50 a second.
    assert len(sent) / 30 >= 0.9 * 980 / 50
    assert ledger.granted[1] <= 980 * 30 * 1.05


def test_a_unit_that_came_due_and_was_not_spent_is_dropped() -> None:
    clock = VirtualTime()
    limits = StatedLimits(requests_per_minute=1200)
    ledger = LeaseLedger(limits, clock=clock)
    blocks = LeaseBlocks(limits, in_process(ledger), clock=clock, sleep=clock.sleep)

    async def scenario() -> None:
        await blocks.take(Amounts(requests=1))  # asks for a block of 5, due over 0.25 s
        assert blocks.asks == 1
        clock.now += 10 * GRACE_S  # idle: the rest of the block goes stale
        await blocks.take(Amounts(requests=1))
        assert blocks.asks == 2

    asyncio.run(clock.run(scenario(), until=clock.now + 10))


def test_a_cancelled_take_gives_back_what_it_already_spent() -> None:
    clock = VirtualTime()
    limits = StatedLimits(requests_per_minute=1200, tokens_per_minute=6000)
    ledger = LeaseLedger(limits, clock=clock)
    blocks = LeaseBlocks(limits, in_process(ledger), clock=clock, sleep=clock.sleep)

    async def scenario() -> None:
        await blocks.take(Amounts(requests=1, tokens=980))  # 10 s of tokens ahead of the next
        waiting = asyncio.ensure_future(blocks.take(Amounts(requests=1, tokens=10)))
        await clock.sleep(1.0)
        assert not waiting.done()
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        asks = blocks.asks
        # The block it took its request from is stale by now: the request came back as credit.
        await blocks.take(Amounts(requests=1))
        assert blocks.asks == asks

    asyncio.run(clock.run(scenario(), until=clock.now + 30))


def run_limiter(clock: VirtualTime, *coros: Awaitable[None]) -> None:
    async def each(c: Awaitable[None]) -> None:
        await c

    asyncio.run(clock.run(*[each(c) for c in coros], until=clock.now + 60))


def test_the_limiter_takes_a_shared_lease_for_every_attempt_and_gives_tokens_back() -> None:
    clock = VirtualTime()
    limits = StatedLimits(requests_per_minute=600, tokens_per_minute=60_000)
    ledger = LeaseLedger(limits, clock=clock)
    blocks = LeaseBlocks(limits, in_process(ledger), clock=clock, sleep=clock.sleep)
    limiter = ProviderLimiter(requests_per_minute=600, tokens_per_minute=60_000,
                              clock=clock, sleep=clock.sleep, shared=blocks)
    sent: list[float] = []

    async def attempts() -> None:
        for _ in range(50):
            ticket = await limiter.acquire(20, 280)
            sent.append(clock.now)
            await clock.sleep(0.01)
            limiter.release(ticket, answered=True, prompt=20, completion=30)

    start = clock.now
    run_limiter(clock, attempts())
    assert len(sent) == 50
    assert 50 <= ledger.granted[0] <= 55  # a lease per attempt (and one block unspent)
    assert sent[-1] - start >= 49 / 9.8
    # 300 reserved per request, 50 used: the rest came back and paid for the next ones.
    assert ledger.granted[1] < 50 * 300 / 2
    assert limiter.slots.used == 0


def test_an_attempt_requeued_by_a_pause_gives_its_lease_back_and_reuses_it() -> None:
    clock = VirtualTime()
    limits = StatedLimits(requests_per_minute=60)  # one a second: every lease is one request
    ledger = LeaseLedger(limits, clock=clock)
    blocks = LeaseBlocks(limits, in_process(ledger), clock=clock, sleep=clock.sleep)
    # Its own limit is far above the shared one, as one shard's share is.
    limiter = ProviderLimiter(requests_per_minute=6000, clock=clock, sleep=clock.sleep,
                              shared=blocks)
    start = clock.now
    tickets = []

    async def second() -> None:
        tickets.append(await limiter.acquire(10, 10))
        tickets.append(await limiter.acquire(10, 10))  # waits ~1 s for its lease

    async def pause() -> None:
        await clock.sleep(0.5)
        limiter.cool_down(5.0)  # a pause begins while the second waits for its lease

    run_limiter(clock, second(), pause())
    assert len(tickets) == 2
    assert tickets[1].sent_at >= start + 5.5  # it waited out the pause
    assert ledger.asks == 2  # and went with the lease it had given back, not a third one
    assert limiter.slots.used == 2


def test_a_cancelled_wait_for_the_lease_frees_the_slot() -> None:
    clock = VirtualTime()
    limits = StatedLimits(requests_per_minute=60)
    ledger = LeaseLedger(limits, clock=clock)
    blocks = LeaseBlocks(limits, in_process(ledger), clock=clock, sleep=clock.sleep)
    limiter = ProviderLimiter(requests_per_minute=6000, max_concurrency=1, clock=clock,
                              sleep=clock.sleep, shared=blocks)

    async def scenario() -> None:
        limiter.release(await limiter.acquire(1, 1))
        waiting = asyncio.ensure_future(limiter.acquire(1, 1))
        await clock.sleep(0.2)
        assert limiter.slots.used == 1 and limiter.waiting["lease"] == 1
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        assert limiter.slots.used == 0 and limiter.waiting["lease"] == 0

    run_limiter(clock, scenario())
