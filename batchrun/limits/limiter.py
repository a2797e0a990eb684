"""Per-provider limits that learn: requests/min, tokens/min, concurrency and the 429 cool-down.

Limits in a job are ceilings. While running, the limiter reads the provider's rate-limit headers
on every response and paces to what they state (never above a ceiling); on a 429 it pauses the
whole provider for the Retry-After, cuts its rate and concurrency multiplicatively, then probes
back up additively while answers keep coming — all run long, so a limit that changes mid-run is
followed. Providers that send no headers are handled by the same 429 loop.

Providers state limits per minute but enforce them over shorter periods (1,200/min may be checked
as 200 per 10 s), so we pace evenly and a little under a known limit (`SAFETY_MARGIN`): a
"remaining" count is never spent in one burst.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from batchrun.limits.headers import Quota, parse_rate_headers
from batchrun.limits.pacing import Clock, Pacer, Slots
from batchrun.limits.rate import CUT_FACTOR, MIN_RATE, AdaptiveRate

Sleep = Callable[[float], Awaitable[None]]

PROBE_EVERY_S = 1.0  # without a 429 for this long, step the rate back up
PROBE_STEP = 0.04  # ... by this fraction of the rate at the last cut (a 5 s climb back)
MIN_ANSWERS_TO_MEASURE = 10  # answers in the last 10 s needed to take them as a rate
TOKEN_BURST_S = 0.2  # token pacers may run this far ahead: what the margin absorbs in 10 s
TOKEN_RECHECK_S = 0.05  # waiting for tokens, look again this often: refunds free them early


@dataclass(frozen=True, slots=True)
class Ticket:
    """What one attempt reserved, returned by `release`."""

    tokens: float
    input_tokens: float
    output_tokens: float


class ProviderLimiter:
    """Everything that gates sending to one provider, behind `acquire` / `release`."""

    def __init__(
        self,
        *,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        input_tokens_per_minute: float | None = None,
        output_tokens_per_minute: float | None = None,
        max_concurrency: int = 64,
        max_pause_s: float = 300.0,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self.requests = AdaptiveRate(requests_per_minute, clock, burst_s=0.0)
        self.tokens = AdaptiveRate(tokens_per_minute, clock, burst_s=TOKEN_BURST_S)
        self.input_tokens = AdaptiveRate(input_tokens_per_minute, clock, burst_s=TOKEN_BURST_S)
        self.output_tokens = AdaptiveRate(output_tokens_per_minute, clock, burst_s=TOKEN_BURST_S)
        self.slots = Slots(max_concurrency)
        self.max_concurrency = max_concurrency
        self._cooldown_until = 0.0
        self._max_pause_s = max_pause_s
        self._last_cut = -1e9
        self._last_probe = clock()
        self._cut_requests_rate = 0.0
        self._seen_limits: tuple[str | None, ...] = ()
        # (answers, tokens) per second of the last few seconds: achieved rates, and the rate
        # to cut from on a 429 when nothing else is known.
        self._recent: dict[int, tuple[int, int]] = {}
        self._first_answer: float | None = None
        self.rate_limited = 0
        self.waiting = {"cooldown": 0, "rate": 0, "tokens": 0, "concurrency": 0}

    async def acquire(self, prompt_tokens: int, max_tokens: int) -> Ticket:
        """Wait until one attempt may be sent; hand the ticket to `release` afterwards."""
        await self._wait_cooldown()
        ticket = Ticket(float(prompt_tokens + max_tokens), float(prompt_tokens), float(max_tokens))
        await self._pace("rate", self.requests, 1.0)
        await self._pace_tokens(ticket)
        if not self.slots.try_acquire():
            self.waiting["concurrency"] += 1
            try:
                await self.slots.acquire()
            finally:
                self.waiting["concurrency"] -= 1
        await self._wait_cooldown()  # a 429 seen while we waited pauses us too
        return ticket

    def release(
        self,
        ticket: Ticket,
        *,
        answered: bool = False,
        prompt: int | None = None,
        completion: int | None = None,
    ) -> None:
        """Free the attempt's slot and give back the tokens it reserved and did not use.

        A failed attempt gives back everything (providers count answered requests); an answer
        without usage keeps its reservation, the safe side.
        """
        self.slots.release()
        if answered:
            self._answered((prompt or 0) + (completion or 0))
            if prompt is None and completion is None:
                return
        used_in, used_out = float(prompt or 0), float(completion or 0)
        for rate, reserved, used in (
            (self.tokens, ticket.tokens, used_in + used_out),
            (self.input_tokens, ticket.input_tokens, used_in),
            (self.output_tokens, ticket.output_tokens, used_out),
        ):
            if rate.pacer is not None and reserved != used:
                rate.pacer.refund(reserved - used)

    def observe(self, headers: Mapping[str, str], status: int) -> None:
        """Learn limits from a response's headers (cheap when nothing changed)."""
        limits = (
            headers.get("x-ratelimit-limit-requests"), headers.get("x-ratelimit-limit-tokens"),
            headers.get("anthropic-ratelimit-requests-limit"),
            headers.get("anthropic-ratelimit-tokens-limit"),
            headers.get("anthropic-ratelimit-input-tokens-limit"),
            headers.get("anthropic-ratelimit-output-tokens-limit"),
        )
        exhausted = "0" in (
            headers.get("x-ratelimit-remaining-requests"),
            headers.get("x-ratelimit-remaining-tokens"),
            headers.get("anthropic-ratelimit-requests-remaining"),
            headers.get("anthropic-ratelimit-tokens-remaining"),
        )
        if limits == self._seen_limits and not exhausted:
            return
        self._seen_limits = limits
        info = parse_rate_headers(headers, now=time.time())
        for rate, quota in ((self.requests, info.requests), (self.tokens, info.tokens),
                            (self.input_tokens, info.input_tokens),
                            (self.output_tokens, info.output_tokens)):
            self._learn(rate, quota)

    def _learn(self, rate: AdaptiveRate, quota: Quota) -> None:
        if quota.limit is not None:
            rate.learn(quota.limit)
        if quota.remaining == 0 and quota.reset_s:
            self.cool_down(quota.reset_s)

    def on_rate_limited(self, retry_after: float | None, fallback_s: float) -> None:
        """A 429: pause the provider, and cut rate and concurrency once per burst of 429s."""
        self.rate_limited += 1
        now = self._clock()
        self.cool_down(retry_after if retry_after is not None else fallback_s)
        if now - self._last_cut < max(PROBE_EVERY_S, self._cooldown_until - now):
            return  # the 429s of requests already in flight: one cut is enough
        self._last_cut = now
        observed = self.achieved(include_current=True)[0] / 60.0
        answers = sum(c for s, (c, _) in self._recent.items() if s >= int(now) - 10)
        # With no rate to cut from (unpaced, and too few answers to measure one), the pause
        # and the smaller concurrency are all we can do.
        if self.requests.pacer is not None or answers >= MIN_ANSWERS_TO_MEASURE:
            self.requests.cut(observed=observed)
            self._cut_requests_rate = self.requests.aimd or 0.0
        self.slots.resize(int(self.slots.limit * CUT_FACTOR))

    def cool_down(self, seconds: float) -> None:
        """Pause every request to this provider for `seconds` (at most `max_pause_s`)."""
        seconds = min(seconds, self._max_pause_s)
        self._cooldown_until = max(self._cooldown_until, self._clock() + seconds)

    def describe(self) -> str:
        """Achieved rates against current limits, what is waited on, and 429s so far."""
        rpm, tpm = self.achieved()
        rpm_limit, tpm_limit = _per_min(self.requests.pacer), _per_min(self.tokens.pacer)
        parts = [
            f"{rpm:,.0f}/{rpm_limit:,.0f} rpm" if rpm_limit else f"{rpm:,.0f} rpm",
            f"{tpm:,.0f}/{tpm_limit:,.0f} tpm" if tpm_limit else f"{tpm:,.0f} tpm",
            f"conc {self.slots.used}/{self.slots.limit}",
        ]
        waits = [f"{what} {n}" for what, n in self.waiting.items() if n]
        if waits:
            parts.append("waiting on " + ", ".join(waits))
        if self.rate_limited:
            parts.append(f"429s {self.rate_limited}")
        return " ".join(parts)

    def _answered(self, tokens: int) -> None:
        now = self._clock()
        if self._first_answer is None:
            self._first_answer = float(int(now))
        second = int(now)
        count, used = self._recent.get(second, (0, 0))
        self._recent[second] = (count + 1, used + tokens)
        if len(self._recent) > 20:
            for old in [s for s in self._recent if s < second - 10]:
                del self._recent[old]
        if now - self._last_probe >= PROBE_EVERY_S and now - self._last_cut >= PROBE_EVERY_S:
            self._last_probe = now
            self.requests.probe(max(self._cut_requests_rate * PROBE_STEP, MIN_RATE))
            if self.slots.limit < self.max_concurrency:
                self.slots.resize(self.slots.limit + 1)

    def achieved(self, *, include_current: bool = False) -> tuple[float, float]:
        """Requests/min and tokens/min answered over the last ten seconds (or since the first)."""
        now = self._clock()
        second = int(now)
        end = second + 1 if include_current else second
        window = [v for s, v in self._recent.items() if second - 10 <= s < end]
        # Early in a run, divide by the time answers have been arriving, not by ten seconds.
        if self._first_answer is None:
            return 0.0, 0.0
        span = min(10.0, (now if include_current else second) - self._first_answer)
        if span <= 0:
            return 0.0, 0.0
        return (sum(c for c, _ in window) * 60.0 / span, sum(t for _, t in window) * 60.0 / span)

    async def _wait_cooldown(self) -> None:
        while (delay := self._cooldown_until - self._clock()) > 0:
            self.waiting["cooldown"] += 1
            try:
                await self._sleep(delay)
            finally:
                self.waiting["cooldown"] -= 1

    async def _pace_tokens(self, ticket: Ticket) -> None:
        # Tokens are checked, then taken, and re-checked after short sleeps: refunds of
        # over-reserved max_tokens arrive while we wait, and a reservation made up front
        # would not see them.
        wants = [(r.pacer, amount) for r, amount in (
            (self.tokens, ticket.tokens), (self.input_tokens, ticket.input_tokens),
            (self.output_tokens, ticket.output_tokens)) if r.pacer is not None and amount > 0]
        if not wants:
            return
        while (delay := max(pacer.delay(amount) for pacer, amount in wants)) > 0:
            self.waiting["tokens"] += 1
            try:
                await self._sleep(min(delay, TOKEN_RECHECK_S))
            finally:
                self.waiting["tokens"] -= 1
        for pacer, amount in wants:
            pacer.take(amount)

    async def _pace(self, what: str, rate: AdaptiveRate, amount: float) -> None:
        if rate.pacer is None or amount <= 0:
            return
        delay = rate.pacer.reserve(amount)
        if delay > 0:
            self.waiting[what] += 1
            try:
                await self._sleep(delay)
            finally:
                self.waiting[what] -= 1





def _per_min(pacer: Pacer | None) -> float | None:
    return None if pacer is None else pacer.rate * 60.0
