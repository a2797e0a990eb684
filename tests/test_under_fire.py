"""Under fire: the limiter tells a limit from noise. Simulated on a virtual clock (no sleeping)
against scripted providers, then end to end against the mock provider on loopback."""

from __future__ import annotations

import asyncio
import heapq
import math
import random
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import batchrun
from batchrun.errors import ConnectionFailed, RateLimited, RequestError, ServerError
from batchrun.limits import ProviderLimiter
from batchrun.limits.controller import Verdict
from batchrun.limits.evidence import ANSWERED, RATE_LIMITED, Outcomes, binomial_tail, clearly_lower
from batchrun.limits.headers import parse_rate_headers, quota_state
from batchrun.mock import MockConfig, MockThread
from tests.conftest import write_job, write_rows


class VirtualTime:
    """A clock and a sleep for many tasks at once: time jumps to the next wake-up when all wait."""

    def __init__(self) -> None:
        self.now = 0.0
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._count = 0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._count += 1
        heapq.heappush(self._timers, (self.now + seconds, self._count, future))
        await future

    async def run(self, tasks: list[asyncio.Task[None]]) -> None:
        while True:
            for _ in range(50):  # let every task that can run go until it waits again
                await asyncio.sleep(0)
            if all(t.done() for t in tasks):
                for t in tasks:
                    t.result()
                return
            assert self._timers, "every task waits, and no timer will wake one"
            self.now = max(self.now, self._timers[0][0])
            while self._timers and self._timers[0][0] <= self.now:
                future = heapq.heappop(self._timers)[2]
                if not future.done():
                    future.set_result(None)


Provider = Callable[[float], RequestError | None]


class HiddenLimit:
    """Admits `per_s * window_s` requests per fixed window, refuses the rest until it ends."""

    def __init__(self, per_s: float, window_s: float, phase_s: float = 2.0) -> None:
        self.per_s, self.window_s, self.phase_s = per_s, window_s, phase_s
        self.window, self.used = -1, 0

    def __call__(self, now: float) -> RequestError | None:
        window = math.floor((now + self.phase_s) / self.window_s)
        if window != self.window:
            self.window, self.used = window, 0
        if self.used >= self.per_s * self.window_s:
            left = (window + 1) * self.window_s - self.phase_s - now  # as retry-after-ms says
            return RateLimited("hidden limit", status=429, retry_after=left)
        self.used += 1
        return None


class Noise:
    """Refuses a share of requests at random whatever the rate: no limit behind it."""

    def __init__(self, share: float, error: Callable[[], RequestError], seed: int = 1) -> None:
        self.share, self.error, self.rng = share, error, random.Random(seed)

    def __call__(self, now: float) -> RequestError | None:
        return self.error() if self.rng.random() < self.share else None


def noise_429() -> RequestError:
    return RateLimited("upstream busy", status=429, retry_after=1.0)


def noise_500() -> RequestError:
    return ServerError("internal error", status=500)


@dataclass
class Outcome:
    """What a simulated run did."""

    seconds: float
    answered: int
    attempts: int
    rate_limited: int
    paused_s: float
    limiter: ProviderLimiter
    sent_at: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.answered / self.seconds


def simulate(provider: Provider, *, rows: int, concurrency: int, latency_s: float,
             during: Callable[[VirtualTime, ProviderLimiter], Coroutine[Any, Any, None]]
             | None = None) -> Outcome:
    """Workers as the runner's: acquire, send, release, report, wait the retry, try again."""
    clock = VirtualTime()
    limiter = ProviderLimiter(max_concurrency=concurrency, clock=clock, sleep=clock.sleep)
    todo = list(range(rows))
    out = Outcome(0.0, 0, 0, 0, 0.0, limiter)

    async def worker() -> None:
        while todo:
            todo.pop()
            for _ in range(10):
                ticket = await limiter.acquire(10, 10)
                out.attempts += 1
                out.sent_at.append(clock.now)
                error = provider(clock.now)
                # A refusal comes back at once; an answer takes the model's time.
                await clock.sleep(latency_s if error is None else min(latency_s, 0.005))
                if error is None:
                    limiter.release(ticket, answered=True, prompt=10, completion=10)
                    out.answered += 1
                    break
                limiter.release(ticket)
                out.rate_limited += isinstance(error, RateLimited)
                limiter.on_error(error, 1.0, ticket)
                await clock.sleep(1.0 if error.retry_after is None else error.retry_after)

    async def watch() -> None:
        while todo or limiter.slots.used:
            await clock.sleep(0.1)
            out.paused_s += 0.1 if limiter.waiting["cooldown"] else 0.0

    async def main() -> None:
        tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
        tasks.append(asyncio.create_task(watch()))
        if during is not None:
            tasks.append(asyncio.create_task(during(clock, limiter)))
        await clock.run(tasks)

    asyncio.run(main())
    out.seconds = clock.now
    return out


# --- the two behaviours -------------------------------------------------------------------------


def test_noise_only_provider_is_never_paused_nor_cut() -> None:
    # 5% of attempts refused whatever the rate: each refused request waits its own Retry-After;
    # the provider as a whole is never paused and its pace never cut.
    out = simulate(Noise(0.05, noise_429), rows=3000, concurrency=100, latency_s=0.05)
    assert out.answered == 3000
    assert out.rate_limited > 100
    assert out.limiter.controller.verdicts[Verdict.LIMIT] == 0
    assert out.paused_s == 0.0
    # Within reach of what 100 slots at 50 ms allow (2,000/s), once the slow start is over.
    assert out.rate > 500
    assert "429s as noise 5%" in out.limiter.describe()


def test_hidden_limit_is_found_by_slow_start_without_a_storm_and_held_just_under() -> None:
    limit = HiddenLimit(per_s=20, window_s=10)
    out = simulate(limit, rows=1000, concurrency=64, latency_s=0.0)
    assert out.answered == 1000
    assert out.rate >= 0.9 * 20
    assert out.rate_limited <= 0.02 * out.attempts
    controller = out.limiter.controller
    assert controller.pace.ceiling == pytest.approx(20, rel=0.1)
    # Held near it: probing above in small steps, never far.
    assert controller.pace.rate is not None and controller.pace.rate <= 1.05 * 20


def test_hidden_limit_over_a_long_window_is_measured_with_the_pause_it_asks_for() -> None:
    # 1,200 per 60 s spent in a few seconds of slow start: the rate that got through is taken
    # over the whole window (the Retry-After counted), 20/s, not over the burst.
    out = simulate(HiddenLimit(per_s=20, window_s=60), rows=2000, concurrency=64,
                   latency_s=0.05)
    assert out.answered == 2000
    assert out.rate >= 0.9 * 20
    assert out.rate_limited <= 0.02 * out.attempts
    assert out.limiter.controller.pace.ceiling == pytest.approx(20, rel=0.1)


def test_same_share_of_429s_is_noise_when_flat_and_a_limit_when_it_follows_the_rate() -> None:
    # Both providers refuse about one attempt in twenty over the run; only the one whose
    # refusals come from sending too fast gets a pause and a cut.
    noisy = simulate(Noise(0.05, noise_429, seed=3), rows=2000, concurrency=64, latency_s=0.05)
    limited = simulate(HiddenLimit(per_s=100, window_s=1, phase_s=0.3), rows=2000,
                       concurrency=64, latency_s=0.05)
    assert noisy.limiter.controller.verdicts[Verdict.LIMIT] == 0
    assert limited.limiter.controller.verdicts[Verdict.LIMIT] >= 1
    assert limited.rate >= 0.9 * 100


def test_a_limit_halved_mid_run_is_followed_within_a_window() -> None:
    limit = HiddenLimit(per_s=20, window_s=10)

    async def halve(clock: VirtualTime, limiter: ProviderLimiter) -> None:
        await clock.sleep(30)
        limit.per_s = 10

    out = simulate(limit, rows=1200, concurrency=64, latency_s=0.0, during=halve)
    assert out.answered == 1200
    late = [t for t in out.sent_at if t >= 50]  # a window after the halving, and on
    assert len(late) / (out.seconds - 50) <= 10 * 1.05
    assert out.limiter.controller.pace.ceiling == pytest.approx(10, rel=0.15)


def test_sporadic_5xx_do_not_throttle() -> None:
    out = simulate(Noise(0.05, noise_500), rows=3000, concurrency=100, latency_s=0.05)
    assert out.answered == 3000
    verdicts = out.limiter.controller.verdicts
    assert verdicts[Verdict.OVERLOAD] == verdicts[Verdict.DOWN] == 0
    assert out.limiter.slots.limit == 100


def test_provider_that_is_down_is_probed_not_hammered_and_recovers() -> None:
    down_until = 30.0

    def provider(now: float) -> RequestError | None:
        return ConnectionFailed("connection refused") if now < down_until else None

    out = simulate(provider, rows=500, concurrency=64, latency_s=0.05)
    assert out.answered == 500
    during_outage = sum(1 for t in out.sent_at if t < down_until)
    # The first wave is in flight before anything is known; then one probe at a time, with a
    # pause that doubles (1, 2, 4, 8, 16 s): a handful of probes over the outage.
    assert during_outage <= 64 + 20
    assert out.limiter.controller.verdicts[Verdict.DOWN] >= 3
    assert out.seconds < down_until + 30  # back to full speed soon after


def test_a_provider_failing_every_request_with_5xx_cuts_concurrency_but_never_stalls() -> None:
    # A gateway's 502 page for every request might be an outage or these requests' fault:
    # there is no pause to wait out, fewer go at once, and each request ends after its attempts.
    def provider(now: float) -> RequestError | None:
        return ServerError("bad gateway", status=502)

    out = simulate(provider, rows=100, concurrency=32, latency_s=0.01)
    assert out.answered == 0 and out.attempts == 100 * 10
    assert out.paused_s == 0.0
    assert out.limiter.controller.verdicts[Verdict.DOWN] == 0
    assert out.limiter.controller.verdicts[Verdict.OVERLOAD] >= 1
    # The cut did not lower the share (every request fails at any concurrency): undone, the
    # failures taken as this provider's usual state, and the rows end at full speed.
    assert out.limiter.slots.limit == 32
    assert out.seconds < 2 * 100 * 10 / 32


def test_progress_text_says_which_limit_why_and_how_long() -> None:
    out = simulate(HiddenLimit(per_s=20, window_s=10), rows=300, concurrency=64, latency_s=0.0)
    limiter = out.limiter
    limiter.cool_down(0)  # a fresh verdict, to read the text while it holds
    for _ in range(4):
        limiter.on_rate_limited(retry_after=6.0, fallback_s=1.0)
    text = limiter.describe()
    assert "cool-down 6.0s, rate limit: " in text and " 429s in a row at " in text
    assert "ceiling now" in text


# --- the evidence -------------------------------------------------------------------------------


def test_binomial_tail() -> None:
    assert binomial_tail(10, 0, 0.1) == 1.0
    assert binomial_tail(10, 11, 0.1) == 0.0
    assert binomial_tail(3, 3, 0.5) == pytest.approx(0.125)
    assert binomial_tail(10, 2, 0.1) == pytest.approx(1 - 0.9**10 - 10 * 0.1 * 0.9**9)


def test_runs_count_in_the_order_requests_were_sent() -> None:
    outcomes = Outcomes()
    # Refusals of sends 5, 6 and 7 arrive before the answer of send 4 (slow, in flight):
    # still a run of three consecutive sends refused.
    for seq in (5, 6, 7):
        outcomes.add(RATE_LIMITED, seq)
    outcomes.add(ANSWERED, 4)
    assert outcomes.run(RATE_LIMITED) == 3
    # Refusals of sends 10 and 12, whose neighbour 11 is still out or was answered: no run.
    noisy = Outcomes()
    noisy.add(RATE_LIMITED, 10)
    noisy.add(RATE_LIMITED, 12)
    assert noisy.run(RATE_LIMITED) == 1


def test_a_cut_that_does_not_lower_the_share_shows_it_is_noise() -> None:
    assert clearly_lower((37, 100), (13, 100))
    assert not clearly_lower((27, 100), (20, 100))


def test_headers_with_the_quota_spent_make_one_429_a_limit() -> None:
    spent = {"x-ratelimit-limit-requests": "600", "x-ratelimit-remaining-requests": "0",
             "x-ratelimit-reset-requests": "2s"}
    plenty = {"x-ratelimit-limit-requests": "600", "x-ratelimit-remaining-requests": "450"}
    assert quota_state(parse_rate_headers(spent, now=0.0)) == "spent"
    assert quota_state(parse_rate_headers(plenty, now=0.0)) == "plenty"
    assert quota_state(parse_rate_headers({}, now=0.0)) is None
    clock = VirtualTime()
    limiter = ProviderLimiter(clock=clock, sleep=clock.sleep)
    limiter.observe(spent, 429)
    assert limiter.on_rate_limited(retry_after=2.0, fallback_s=1.0) is Verdict.LIMIT
    other = ProviderLimiter(clock=clock, sleep=clock.sleep)
    other.observe(plenty, 429)  # an upstream's 429: the key's quota is far from spent
    assert other.on_rate_limited(retry_after=2.0, fallback_s=1.0) is Verdict.NOISE


# --- end to end, on the mock provider ---------------------------------------------------------


@pytest.mark.slow
def test_sporadic_429s_and_5xx_from_the_mock_end_with_every_row_ok(tmp_path: Path) -> None:
    config = MockConfig(latency_ms=5, faults=(("429", 0.05), ("500", 0.05), ("drop", 0.02)),
                        retry_after_s=0.2, seed=3)
    rows = 400
    write_rows(tmp_path / "rows.jsonl", [{"id": f"r{i}", "text": f"t{i}"} for i in range(rows)])
    with MockThread(config) as server:
        job = write_job(tmp_path, base_url=server.base_url, provider={"max_concurrency": 32},
                        retry={"max_attempts": 8})
        summary = batchrun.run(job)
        stats = server.stats_snapshot()
    assert (summary.ok, summary.error) == (rows, 0)
    assert stats["injected"]["429"] > 5 and stats["injected"]["500"] > 5
    assert stats["answered_twice"] == 0


@pytest.mark.slow
def test_hung_requests_are_bounded_by_the_timeout_and_retried(tmp_path: Path) -> None:
    config = MockConfig(faults=(("hang", 0.05),), hang_s=30.0, seed=2)
    rows = 100
    write_rows(tmp_path / "rows.jsonl", [{"id": f"r{i}", "text": f"t{i}"} for i in range(rows)])
    with MockThread(config) as server:
        job = write_job(tmp_path, base_url=server.base_url,
                        provider={"max_concurrency": 16, "timeout_seconds": 0.5},
                        retry={"max_attempts": 6})
        summary = batchrun.run(job)
        stats = server.stats_snapshot()
    assert (summary.ok, summary.error) == (rows, 0)
    assert stats["injected"]["hang"] >= 2
