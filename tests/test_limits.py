"""Pacing with an injected clock: nothing here sleeps."""

from __future__ import annotations

import asyncio

import pytest

from batchrun.limits import SAFETY_MARGIN, Pacer, ProviderLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_pacer_spaces_permits_evenly_instead_of_bursting() -> None:
    clock = FakeClock()
    pacer = Pacer(10.0, burst=1.0, clock=clock)
    waits = [pacer.reserve() for _ in range(5)]
    assert waits == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])


def test_pacer_never_exceeds_rate_in_any_window() -> None:
    clock = FakeClock()
    pacer = Pacer(20.0, burst=1.0, clock=clock)
    send_times = []
    for _ in range(1000):
        wait = pacer.reserve()
        send_times.append(clock.now + wait)
        clock.now += 0.001  # callers arrive far faster than the rate
    window = 10.0
    for start in send_times:
        inside = sum(1 for t in send_times if start <= t < start + window)
        assert inside <= 20 * window + 1


def test_pacer_idle_time_is_not_banked_beyond_the_burst() -> None:
    clock = FakeClock()
    pacer = Pacer(10.0, burst=1.0, clock=clock)
    clock.now += 60  # a minute idle
    waits = [pacer.reserve() for _ in range(3)]
    assert waits == pytest.approx([0.0, 0.1, 0.2])


def test_oversized_request_waits_for_an_idle_pacer_instead_of_failing() -> None:
    clock = FakeClock()
    pacer = Pacer(100.0, burst=10.0, clock=clock)
    assert pacer.reserve(5) == 0.0
    # Needs 50 permits, five times the burst: waits until the earlier 5 are paid off.
    assert pacer.reserve(50) == pytest.approx(0.05)
    # ... and the debt it ran into delays the next one by its full cost.
    assert pacer.reserve(1) == pytest.approx(0.05 + 0.5 - 0.1 + 0.01)


def test_refund_returns_unused_reservation_to_later_requests() -> None:
    clock = FakeClock()
    pacer = Pacer(100.0, burst=1.0, clock=clock)
    pacer.reserve(1)
    pacer.reserve(100)  # reserved max_tokens
    before = Pacer(100.0, burst=1.0, clock=clock)
    before.reserve(1)
    before.reserve(100)
    pacer.refund(90)  # only 10 were used
    assert pacer.reserve(1) == pytest.approx(before.reserve(1) - 0.9)


def test_set_rate_keeps_backlog_and_changes_spacing() -> None:
    clock = FakeClock()
    pacer = Pacer(10.0, burst=1.0, clock=clock)
    pacer.reserve()
    pacer.set_rate(5.0)
    assert pacer.reserve() == pytest.approx(0.2 - 0.2 + 0.0, abs=0.21)
    assert pacer.rate == 5.0


def test_limiter_paces_below_the_stated_limit() -> None:
    clock = FakeClock()
    limiter = ProviderLimiter(
        requests_per_minute=600, tokens_per_minute=None, clock=clock, sleep=clock.sleep
    )

    async def send(n: int) -> None:
        for _ in range(n):
            await limiter.acquire(0)

    asyncio.run(send(101))
    elapsed = clock.now - 1000.0
    assert elapsed == pytest.approx(100 / (10 * (1 - SAFETY_MARGIN)), rel=1e-6)


def test_cool_down_pauses_every_request_of_the_provider() -> None:
    clock = FakeClock()
    limiter = ProviderLimiter(
        requests_per_minute=None, tokens_per_minute=None, clock=clock, sleep=clock.sleep
    )
    limiter.cool_down(7.5)

    async def one() -> float:
        start = clock.now
        await limiter.acquire(10)
        return clock.now - start

    assert asyncio.run(one()) == pytest.approx(7.5)
    assert asyncio.run(one()) == 0.0


def test_token_reservations_pace_by_tokens_and_settle_refunds() -> None:
    clock = FakeClock()
    limiter = ProviderLimiter(
        requests_per_minute=None, tokens_per_minute=60_000, clock=clock, sleep=clock.sleep
    )

    async def go() -> None:
        for _ in range(10):
            await limiter.acquire(1000)
            limiter.settle(1000, 100)  # the answer used a tenth of the reservation

    asyncio.run(go())
    rate = 1000 * (1 - SAFETY_MARGIN)
    # Ten requests of 100 real tokens each: about a second of budget, not ten.
    assert clock.now - 1000.0 < 2.0 * 1000 / rate
