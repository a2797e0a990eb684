"""Per-provider limits that learn: requests/min, tokens/min, concurrency and pauses.

Limits in a job are ceilings. While running, the limiter reads the provider's rate-limit headers
on every response and paces to what they state (never above a ceiling). Every finished attempt
goes to the `Controller` (`limits.controller`), which tells a limit from noise: a sporadic 429,
5xx or 529 delays only its own request, while a limit that is being hit pauses the whole
provider and cuts its pace and concurrency, which then climb back while answers keep coming.
With no limit known at all, the controller's slow start finds one without a storm.

Providers state limits per minute but enforce them over shorter periods (1,200/min may be checked
as 200 per 10 s), so we pace evenly and a little under a known limit (`SAFETY_MARGIN`): a
"remaining" count is never spent in one burst.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from batchrun.errors import (
    ConnectionFailed,
    Overloaded,
    RateLimited,
    RequestError,
    RetryableError,
    Timeout,
)
from batchrun.limits.controller import Controller, Verdict
from batchrun.limits.evidence import Achieved
from batchrun.limits.headers import Quota, parse_rate_headers, quota_state
from batchrun.limits.pacing import Clock, Pacer, Slots
from batchrun.limits.rate import AdaptiveRate
from batchrun.limits.shared import Amounts, SharedLimit

Sleep = Callable[[float], Awaitable[None]]

TOKEN_BURST_S = 0.2  # token pacers may run this far ahead: what the margin absorbs in 10 s
TOKEN_RECHECK_S = 0.05  # waiting for tokens, look again this often: refunds free them early


@dataclass(frozen=True, slots=True)
class Ticket:
    """What one attempt reserved, returned by `release`."""

    tokens: float
    input_tokens: float
    output_tokens: float
    sent_at: float = 0.0  # the limiter's clock when the attempt was let go
    seq: int = 0  # its place in the order of sending


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
        shared: SharedLimit | None = None,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self.requests = AdaptiveRate(requests_per_minute, clock, burst_s=0.0)
        self.tokens = AdaptiveRate(tokens_per_minute, clock, burst_s=TOKEN_BURST_S)
        self.input_tokens = AdaptiveRate(input_tokens_per_minute, clock, burst_s=TOKEN_BURST_S)
        self.output_tokens = AdaptiveRate(output_tokens_per_minute, clock, burst_s=TOKEN_BURST_S)
        self.slots = Slots(max_concurrency)
        self.max_concurrency = max_concurrency
        self.controller = Controller(
            max_concurrency=max_concurrency, clock=clock, max_pause_s=max_pause_s
        )
        self._cooldown_until = 0.0
        self._max_pause_s = max_pause_s
        self._seen_limits: tuple[str | None, ...] = ()
        self._acted = 0  # the controller's verdicts already applied
        self._quota_429: str | None = None  # what the latest 429's headers said of the quota
        self._achieved = Achieved()
        self.rate_limited = 0
        self.waiting = {"cooldown": 0, "rate": 0, "tokens": 0, "concurrency": 0}
        # Limits shared with other processes (shards of one run), consulted after our own.
        self._shared = shared
        if shared is not None:
            self.waiting["lease"] = 0
        self.controller.pace.state(self.requests.limit)
        self._apply()

    async def acquire(self, prompt_tokens: int, max_tokens: int) -> Ticket:
        """Wait until one attempt may be sent; hand the ticket to `release` afterwards."""
        wanted = Ticket(float(prompt_tokens + max_tokens), float(prompt_tokens), float(max_tokens))
        while True:
            acted = self.controller.acted
            await self._wait_cooldown()
            await self._pace("rate", self.requests, 1.0)
            taken = await self._pace_tokens(wanted)
            if not self.slots.try_acquire():
                self.waiting["concurrency"] += 1
                try:
                    await self.slots.acquire()
                finally:
                    self.waiting["concurrency"] -= 1
            if self._shared is not None:
                await self._take_shared(self._shared, wanted, taken)
            now = self._clock()
            if self._cooldown_until <= now and acted == self.controller.acted:
                return Ticket(wanted.tokens, wanted.input_tokens, wanted.output_tokens, now,
                              self.controller.sent())
            # A pause began, or the pace was cut, while we waited: the time we were given
            # belongs to the old pace (whose queue `_apply` dropped). Give the slot and tokens
            # back and queue again behind the new one, or every waiter would still leave at the
            # old spacing, or all at once when the pause ends.
            self.slots.release()
            for pacer, amount in taken:
                pacer.refund(amount)
            if self._shared is not None:
                self._shared.give_back(_shared_need(wanted))

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
            self._answered((prompt or 0) + (completion or 0), ticket)
            if prompt is None and completion is None:
                return
        used_in, used_out = float(prompt or 0), float(completion or 0)
        if self._shared is not None:
            self._shared.give_back(Amounts(
                0.0, ticket.tokens - used_in - used_out, ticket.input_tokens - used_in,
                ticket.output_tokens - used_out))
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
        if limits == self._seen_limits and not exhausted and status != 429:
            return
        self._seen_limits = limits
        info = parse_rate_headers(headers, now=time.time())
        if status == 429:
            # Read now, used by the 429's own `on_error` a moment later: whether the key's
            # quota is what refused us is the strongest evidence there is.
            self._quota_429 = quota_state(info)
        for rate, quota in ((self.requests, info.requests), (self.tokens, info.tokens),
                            (self.input_tokens, info.input_tokens),
                            (self.output_tokens, info.output_tokens)):
            self._learn(rate, quota)
        self.controller.pace.state(self.requests.limit)
        self._apply()

    def _learn(self, rate: AdaptiveRate, quota: Quota) -> None:
        if quota.limit is not None:
            rate.learn(quota.limit)
        if quota.remaining == 0 and quota.reset_s:
            self.cool_down(quota.reset_s)

    def on_error(
        self, error: RequestError, fallback_s: float, ticket: Ticket | None = None
    ) -> Verdict | None:
        """A failed attempt (after `release(ticket)`): noise, or a verdict on the provider.

        `fallback_s` is how long to pause when a verdict calls for it and the provider named
        no time. Errors that say nothing of the provider's load (a bad request, a schema
        mismatch) are not evidence.
        """
        if isinstance(error, RateLimited):
            return self.on_rate_limited(error.retry_after, fallback_s, ticket=ticket)
        if not isinstance(error, RetryableError):
            return None
        unavailable = isinstance(error, ConnectionFailed | Timeout | Overloaded) or (
            error.status == 503)
        verdict = self.controller.failed(error.retry_after, fallback_s, self.slots.used,
                                         None if ticket is None else ticket.seq,
                                         unavailable=unavailable)
        self._apply()
        return verdict

    def on_rate_limited(
        self, retry_after: float | None, fallback_s: float, *, ticket: Ticket | None = None
    ) -> Verdict:
        """A 429: noise leaves the others alone; a limit pauses the provider and cuts its pace."""
        self.rate_limited += 1
        quota, self._quota_429 = self._quota_429, None
        verdict = self.controller.rate_limited(retry_after, fallback_s, quota,
                                               None if ticket is None else ticket.seq)
        self._apply()
        return verdict

    def cool_down(self, seconds: float) -> None:
        """Pause every request to this provider for `seconds` (at most `max_pause_s`)."""
        seconds = min(seconds, self._max_pause_s)
        self._cooldown_until = max(self._cooldown_until, self._clock() + seconds)

    def describe(self) -> str:
        """Achieved rates against current limits, what is waited on and why, 429s so far."""
        rpm, tpm = self._achieved.per_minute(self._clock())
        rpm_limit, tpm_limit = _per_min(self.requests.pacer), _per_min(self.tokens.pacer)
        parts = [
            f"{rpm:,.0f}/{rpm_limit:,.0f} rpm" if rpm_limit else f"{rpm:,.0f} rpm",
            f"{tpm:,.0f}/{tpm_limit:,.0f} tpm" if tpm_limit else f"{tpm:,.0f} tpm",
            f"conc {self.slots.used}/{self.slots.limit}",
        ]
        waits = [f"{what} {n}" for what, n in self.waiting.items() if n]
        if waits:
            parts.append("waiting on " + ", ".join(waits))
        left = self._cooldown_until - self._clock()
        why = self.controller.describe()
        if left > 0 and not why.startswith("cool-down"):
            why = f"cool-down {left:.1f}s: the headers say a quota is spent" + (
                f"; {why}" if why else "")
        if why:
            parts.append(f"({why})")
        if self.rate_limited:
            parts.append(f"429s {self.rate_limited}")
        return " ".join(parts)

    def _answered(self, tokens: int, ticket: Ticket) -> None:
        self._achieved.add(self._clock(), tokens)
        self.controller.answered(ticket.sent_at, ticket.seq)
        self._apply()

    def _apply(self) -> None:
        """Bring the pacer, the slots and the pause up to what the controller decided."""
        controller = self.controller
        if controller.pace.rate != self.requests.controlled:
            self.requests.control(controller.pace.rate)
        concurrency = int(controller.window.size)
        if concurrency != self.slots.limit:
            self.slots.resize(concurrency)
        if controller.pause_until > self._cooldown_until:
            self._cooldown_until = controller.pause_until
        if controller.acted != self._acted:
            self._acted = controller.acted
            if self.requests.pacer is not None:
                # The queue of permits granted at the old pace is dropped: its waiters come
                # back (see `acquire`) and queue afresh at the new pace after the pause.
                self.requests.pacer.restart(self._cooldown_until)

    async def _wait_cooldown(self) -> None:
        while (delay := self._cooldown_until - self._clock()) > 0:
            self.waiting["cooldown"] += 1
            try:
                await self._sleep(delay)
            finally:
                self.waiting["cooldown"] -= 1

    async def _pace_tokens(self, ticket: Ticket) -> list[tuple[Pacer, float]]:
        # Tokens are checked, then taken, and re-checked after short sleeps: refunds of
        # over-reserved max_tokens arrive while we wait, and a reservation made up front
        # would not see them.
        wants = [(r.pacer, amount) for r, amount in (
            (self.tokens, ticket.tokens), (self.input_tokens, ticket.input_tokens),
            (self.output_tokens, ticket.output_tokens)) if r.pacer is not None and amount > 0]
        if not wants:
            return wants
        while (delay := max(pacer.delay(amount) for pacer, amount in wants)) > 0:
            self.waiting["tokens"] += 1
            try:
                await self._sleep(min(delay, TOKEN_RECHECK_S))
            finally:
                self.waiting["tokens"] -= 1
        for pacer, amount in wants:
            pacer.take(amount)
        return wants

    async def _take_shared(
        self, shared: SharedLimit, wanted: Ticket, taken: list[tuple[Pacer, float]]
    ) -> None:
        self.waiting["lease"] += 1
        try:
            await shared.take(_shared_need(wanted))
        except BaseException:
            # Cancelled while the other processes had the limit: our slot and tokens go back.
            self.slots.release()
            for pacer, amount in taken:
                pacer.refund(amount)
            raise
        finally:
            self.waiting["lease"] -= 1

    async def _pace(self, what: str, rate: AdaptiveRate, amount: float) -> None:
        pacer = rate.pacer
        if pacer is None or amount <= 0:
            return
        delay = pacer.reserve(amount)
        if delay > 0:
            # Requests queue behind our pace: it is what holds them back, so it may grow.
            self.controller.paced()
            self.waiting[what] += 1
            try:
                await self._sleep(delay)
            finally:
                self.waiting[what] -= 1


def _shared_need(ticket: Ticket) -> Amounts:
    return Amounts(1.0, ticket.tokens, ticket.input_tokens, ticket.output_tokens)


def _per_min(pacer: Pacer | None) -> float | None:
    return None if pacer is None else pacer.rate * 60.0
