"""Pacing with an injected clock: nothing here sleeps."""

from __future__ import annotations

import asyncio

import pytest

from batchrun.limits import ProviderLimiter
from batchrun.limits.climb import CUT
from batchrun.limits.controller import Verdict
from batchrun.limits.headers import parse_duration, parse_rate_headers
from batchrun.limits.pacing import Pacer, Slots
from batchrun.limits.rate import SAFETY_MARGIN


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
            limiter.release(await limiter.acquire(0, 0))

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
        limiter.release(await limiter.acquire(5, 5))
        return clock.now - start

    assert asyncio.run(one()) == pytest.approx(7.5)
    # Once it is over, nothing waits but the slow start's even spacing (no limit is known:
    # it paces from two requests per second per slot), a hundredth of a second here.
    assert asyncio.run(one()) < 0.05


def test_token_reservations_pace_by_tokens_and_settle_refunds() -> None:
    clock = FakeClock()
    limiter = ProviderLimiter(
        requests_per_minute=None, tokens_per_minute=60_000, clock=clock, sleep=clock.sleep
    )

    async def go() -> None:
        for _ in range(10):
            ticket = await limiter.acquire(100, 900)
            # The answer used a tenth of the reservation.
            limiter.release(ticket, answered=True, prompt=50, completion=50)

    asyncio.run(go())
    rate = 1000 * (1 - SAFETY_MARGIN)
    # Ten requests of 100 real tokens each: about a second of budget, not ten.
    assert clock.now - 1000.0 < 2.0 * 1000 / rate


def test_go_style_durations_of_openai_reset_headers() -> None:
    assert parse_duration("6m0s") == 360.0
    assert parse_duration("1.5s") == 1.5
    assert parse_duration("20ms") == pytest.approx(0.02)
    assert parse_duration("1h2m3s") == 3723.0
    assert parse_duration("7") == 7.0
    assert parse_duration("soon") is None


def test_openai_rate_headers_are_read() -> None:
    info = parse_rate_headers({
        "x-ratelimit-limit-requests": "1200", "x-ratelimit-remaining-requests": "1150",
        "x-ratelimit-reset-requests": "2.5s", "x-ratelimit-limit-tokens": "400000",
        "x-ratelimit-remaining-tokens": "399000", "x-ratelimit-reset-tokens": "150ms",
    }, now=0.0)
    assert (info.requests.limit, info.requests.remaining, info.requests.reset_s) == (
        1200, 1150, 2.5)
    assert info.tokens.limit == 400000
    assert info.tokens.reset_s == pytest.approx(0.15)


def test_anthropic_rate_headers_with_rfc3339_resets_are_read() -> None:
    info = parse_rate_headers({
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": "2026-01-01T00:00:30Z",
        "anthropic-ratelimit-input-tokens-limit": "40000",
        "anthropic-ratelimit-output-tokens-limit": "8000",
    }, now=1767225600.0)  # 2026-01-01T00:00:00Z
    assert info.requests.limit == 50 and info.requests.remaining == 0
    assert info.requests.reset_s == pytest.approx(30.0)
    assert (info.input_tokens.limit, info.output_tokens.limit) == (40000, 8000)


def test_no_rate_headers_is_empty() -> None:
    assert parse_rate_headers({"content-type": "application/json"}, now=0.0).empty


def test_limit_learned_from_headers_paces_an_unstated_limit() -> None:
    clock = FakeClock()
    limiter = ProviderLimiter(clock=clock, sleep=clock.sleep)
    # Nothing known: only the slow start paces (it used to be unpaced; slow start finds a
    # hidden limit without a storm).
    assert limiter.requests.pacer is not None
    assert limiter.requests.pacer.rate == limiter.controller.pace.rate
    limiter.observe({"x-ratelimit-limit-requests": "600"}, 200)
    assert limiter.requests.pacer is not None
    assert limiter.requests.pacer.rate == pytest.approx(10 * (1 - SAFETY_MARGIN))
    # A job's ceiling below the stated limit wins.
    capped = ProviderLimiter(requests_per_minute=60, clock=clock, sleep=clock.sleep)
    capped.observe({"x-ratelimit-limit-requests": "600"}, 200)
    assert capped.requests.pacer is not None
    assert capped.requests.pacer.rate == pytest.approx(1 * (1 - SAFETY_MARGIN))


def test_exhausted_remaining_pauses_until_the_reset() -> None:
    clock = FakeClock()
    limiter = ProviderLimiter(clock=clock, sleep=clock.sleep)
    limiter.observe({"x-ratelimit-limit-requests": "600", "x-ratelimit-remaining-requests": "0",
                     "x-ratelimit-reset-requests": "3s"}, 200)

    async def one() -> None:
        limiter.release(await limiter.acquire(1, 1))

    asyncio.run(one())
    assert clock.now - 1000.0 >= 3.0


def test_a_single_429_is_noise_and_delays_nobody_else() -> None:
    # Until the evidence-based controller, every 429 paused the provider and cut its rate and
    # concurrency; a sporadic one is now left to its own request's Retry-After.
    clock = FakeClock()
    limiter = ProviderLimiter(requests_per_minute=1200, max_concurrency=10, clock=clock,
                              sleep=clock.sleep)
    assert limiter.on_rate_limited(retry_after=5.0, fallback_s=1.0) is Verdict.NOISE
    assert limiter.requests.pacer is not None
    assert limiter.requests.pacer.rate == pytest.approx(20 * (1 - SAFETY_MARGIN))
    assert limiter.slots.limit == 10

    async def one() -> float:
        start = clock.now
        limiter.release(await limiter.acquire(1, 1))
        return clock.now - start

    assert asyncio.run(one()) == 0.0


def test_429s_in_a_row_cut_rate_and_concurrency_then_climb_back_up() -> None:
    # Was: one 429 cut the rate to 80% and climbed back additively. Now it takes a run of 429s
    # (four consecutive sends refused: one in millions as noise at the assumed 2% share) to
    # pause and cut; with nothing yet measured the pace halves, then doubles back to just
    # under the ceiling and climbs on in small steps to the stated limit.
    clock = FakeClock()
    limiter = ProviderLimiter(requests_per_minute=1200, max_concurrency=10, clock=clock,
                              sleep=clock.sleep)
    full = 20 * (1 - SAFETY_MARGIN)
    verdicts = [limiter.on_rate_limited(retry_after=1.0, fallback_s=1.0) for _ in range(4)]
    assert verdicts[-1] is Verdict.LIMIT
    assert limiter.requests.pacer is not None
    assert limiter.requests.pacer.rate == pytest.approx(full * CUT)
    assert limiter.slots.limit == 10 // 2
    # More 429s from requests already in flight do not cut again.
    limiter.on_rate_limited(retry_after=1.0, fallback_s=1.0)
    assert limiter.requests.pacer.rate == pytest.approx(full * CUT)
    rates = []

    async def answer_for(seconds: float) -> None:
        # Back to back: the pace is what holds requests back, so it may grow.
        end = clock.now + seconds
        while clock.now < end:
            limiter.release(await limiter.acquire(1, 1), answered=True, prompt=1, completion=1)
            assert limiter.requests.pacer is not None
            rates.append(limiter.requests.pacer.rate)

    asyncio.run(answer_for(30))
    steps = sorted(set(rates))
    assert steps[0] == pytest.approx(full * CUT)
    assert len(steps) > 3  # a double, then several small steps: not one jump
    assert rates[-1] == pytest.approx(full)  # back to the stated limit, never above
    assert limiter.slots.limit == 10


def test_429s_in_a_row_without_any_known_rate_pause_for_the_retry_after() -> None:
    clock = FakeClock()
    limiter = ProviderLimiter(max_concurrency=8, clock=clock, sleep=clock.sleep)
    for _ in range(4):
        limiter.on_rate_limited(retry_after=None, fallback_s=2.0)
    assert limiter.slots.limit == 8 // 2
    assert limiter.requests.pacer is not None  # paced now: at half the rate that was refused

    async def one() -> float:
        start = clock.now
        limiter.release(await limiter.acquire(1, 1))
        return clock.now - start

    assert asyncio.run(one()) == pytest.approx(2.0)
    assert "rate limit" in limiter.describe()


def test_cool_down_is_capped_by_the_longest_pause() -> None:
    clock = FakeClock()
    limiter = ProviderLimiter(max_pause_s=5.0, clock=clock, sleep=clock.sleep)
    limiter.cool_down(3600)

    async def one() -> None:
        limiter.release(await limiter.acquire(1, 1))

    asyncio.run(one())
    assert clock.now - 1000.0 == pytest.approx(5.0)


def test_slots_shrink_and_grow_while_in_use() -> None:
    async def scenario() -> list[int]:
        slots = Slots(2)
        await slots.acquire()
        await slots.acquire()
        slots.resize(1)
        waiter = asyncio.create_task(slots.acquire())
        await asyncio.sleep(0)
        slots.release()  # 1 in use, limit 1: the waiter still waits
        await asyncio.sleep(0)
        seen = [slots.used, int(waiter.done())]
        slots.resize(2)
        await asyncio.sleep(0)
        seen += [slots.used, int(waiter.done())]
        return seen

    assert asyncio.run(scenario()) == [1, 0, 2, 1]
