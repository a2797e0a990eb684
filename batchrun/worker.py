"""One request's journey: limits -> retry(send) -> check -> result record."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from tenacity import AsyncRetrying

from batchrun.errors import InvalidAnswer, RateLimited, RequestError, RetryableError
from batchrun.usage import row_cost, worst_case_cost

if TYPE_CHECKING:
    from batchrun.answer import Answer
    from batchrun.job import Price
    from batchrun.limits import ProviderLimiter
    from batchrun.providers.http import ProviderClient, Reply
    from batchrun.requests import Request
    from batchrun.structured import AnswerChecker, Structured

# Reserved for a request that sets no max_tokens: enough for a typical answer.
DEFAULT_COMPLETION_ESTIMATE = 1024


@dataclass(slots=True)
class Tally:
    """Running totals of this run, for progress, budget and the summary."""

    ok: int = 0
    error: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cached_tokens: int = 0
    total_tokens: int = 0
    cost_usd: float = 0.0
    priced_rows: int = 0
    rate_limited: int = 0
    retries: int = 0
    errors_by_type: dict[str, int] = field(default_factory=dict)

    def add(self, record: dict[str, Any]) -> None:
        """Count one result record."""
        if record["status"] == "ok":
            self.ok += 1
        else:
            self.error += 1
            kind = record["error_type"]
            self.errors_by_type[kind] = self.errors_by_type.get(kind, 0) + 1
        self.prompt_tokens += record["prompt_tokens"] or 0
        self.completion_tokens += record["completion_tokens"] or 0
        self.reasoning_tokens += record["reasoning_tokens"] or 0
        self.cached_tokens += record["cached_tokens"] or 0
        self.total_tokens += record["total_tokens"] or 0
        if record["cost_usd"] is not None:
            self.cost_usd += record["cost_usd"]
            self.priced_rows += 1


class Budget:
    """`[budget] max_usd`: spent so far plus the worst case of what is in flight."""

    def __init__(self, max_usd: float | None, spent: float) -> None:
        self.max_usd = max_usd
        self.spent = spent
        self.in_flight = 0.0
        self.exhausted = False

    def reserve(self, worst: float) -> bool:
        """Hold `worst` USD for one request, or refuse (and stay refused) past the budget."""
        if self.max_usd is None:
            return True
        if self.exhausted or self.spent + self.in_flight + worst > self.max_usd:
            self.exhausted = True
            return False
        self.in_flight += worst
        return True

    def settle(self, worst: float, actual: float | None) -> None:
        """Replace a reservation by what the request really cost."""
        if self.max_usd is None:
            return
        self.in_flight -= worst
        # Unknown cost (usage missing): count the worst case, the safe side.
        self.spent += worst if actual is None else actual


@dataclass(frozen=True, slots=True)
class Lane:
    """What one provider's workers share."""

    client: ProviderClient
    limiter: ProviderLimiter


@dataclass(frozen=True, slots=True)
class Settings:
    """What every worker shares."""

    retry: AsyncRetrying
    checker: AnswerChecker | None
    prices: dict[str, Price | None]
    backoff_initial_s: float


async def process(request: Request, lane: Lane, settings: Settings, tally: Tally) -> dict[str, Any]:
    """Send one request with its retries and return its result record (ok or error)."""
    attempt = _Attempt(request, lane, settings, tally)
    try:
        try:
            # Most requests succeed at once: the retry machinery is only built when one fails.
            await attempt()
        except RetryableError as first_failure:
            await _retry(attempt, first_failure, settings.retry)
    except RequestError as error:
        price = settings.prices.get(request.variant)
        return error_record(request, error, attempt.count, attempt.reply, price)
    assert attempt.reply is not None
    price = settings.prices.get(request.variant)
    return ok_record(request, attempt.reply, attempt.count, attempt.structured, price)


async def _retry(attempt: _Attempt, first_failure: RetryableError, policy: AsyncRetrying) -> None:
    """The attempts after the first, as the tenacity policy decides."""
    replayed = False
    async for retry in policy.copy():
        with retry:
            if not replayed:
                replayed = True
                # Attempt 1 already failed: tenacity sees its error, so the wait (Retry-After
                # or backoff) and the attempt count follow the policy exactly.
                raise first_failure
            await attempt()


class _Attempt:
    """One attempt at a request: limits, send, check; remembers the last reply."""

    __slots__ = ("count", "lane", "reply", "request", "settings", "structured", "tally")

    def __init__(self, request: Request, lane: Lane, settings: Settings, tally: Tally) -> None:
        self.request = request
        self.lane = lane
        self.settings = settings
        self.tally = tally
        self.count = 0
        self.reply: Reply | None = None
        self.structured: Structured | None = None

    async def __call__(self) -> None:
        self.count += 1
        if self.count > 1:
            self.tally.retries += 1
        request, limiter = self.request, self.lane.limiter
        max_tokens = request.max_tokens or DEFAULT_COMPLETION_ESTIMATE
        ticket = await limiter.acquire(request.prompt_tokens_est, max_tokens)
        try:
            reply = await self.lane.client.send(request.body)
        except RateLimited as error:
            limiter.release(ticket)
            self.tally.rate_limited += 1
            limiter.on_rate_limited(error.retry_after, self.settings.backoff_initial_s)
            raise
        except BaseException:
            limiter.release(ticket)
            raise
        self.reply = reply
        usage = reply.answer.usage
        limiter.release(ticket, answered=True, prompt=usage.prompt_tokens,
                        completion=usage.completion_tokens)
        if self.settings.checker is not None:
            self.structured = self.settings.checker.check(reply.answer.content)


def worst_cost(request: Request, price: Price | None) -> float:
    """The most this request can cost, for the budget."""
    completion = request.max_tokens or DEFAULT_COMPLETION_ESTIMATE
    return worst_case_cost(request.prompt_tokens_est, completion, price)


def _base(request: Request, attempts: int) -> dict[str, Any]:
    return {
        "id": request.row_id,
        "variant": request.variant,
        "provider": request.provider,
        "model": request.model,
        "sample": request.sample,
        "request_hash": request.hash,
        "attempts": attempts,
        "finished_at": int(time.time() * 1_000_000),
    }


def _answer_columns(answer: Answer, price: Price | None) -> dict[str, Any]:
    usage = answer.usage
    total = usage.total_tokens
    if total is None and usage.prompt_tokens is not None and usage.completion_tokens is not None:
        total = usage.prompt_tokens + usage.completion_tokens
    return {
        "content": answer.content,
        "reasoning": answer.reasoning,
        "tool_calls": orjson.dumps(answer.tool_calls).decode() if answer.tool_calls else None,
        "finish_reason": answer.finish_reason,
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "reasoning_tokens": usage.reasoning_tokens,
        "cached_tokens": usage.cached_tokens,
        "total_tokens": total,
        "cost_usd": row_cost(usage, price),
        "response_id": answer.response_id,
    }


_EMPTY_ANSWER = dict.fromkeys(
    ("content", "reasoning", "tool_calls", "finish_reason", "prompt_tokens", "completion_tokens",
     "reasoning_tokens", "cached_tokens", "total_tokens", "cost_usd", "response_id")
)


def ok_record(
    request: Request,
    reply: Reply,
    attempts: int,
    structured: Structured | None,
    price: Price | None,
) -> dict[str, Any]:
    """The record of a request that ended ok."""
    record = _base(request, attempts)
    record.update(_answer_columns(reply.answer, price))
    record.update(
        status="ok",
        parsed=structured.parsed if structured is not None else None,
        latency_s=reply.latency_s,
        error_type=None,
        error_message=None,
        raw=reply.raw,
    )
    if structured is not None:
        record.update(structured.fields)
    record.update(request.keep)
    return record


def error_record(
    request: Request,
    error: RequestError,
    attempts: int,
    reply: Reply | None,
    price: Price | None,
) -> dict[str, Any]:
    """The record of a request that ended in error; a paid-for answer keeps its usage."""
    record = _base(request, attempts)
    if isinstance(error, InvalidAnswer) and reply is not None:
        # The answer was paid for: keep its text and usage so the cost is not lost.
        record.update(_answer_columns(reply.answer, price))
    else:
        record.update(_EMPTY_ANSWER)
    record.update(
        status="error",
        parsed=None,
        latency_s=None,
        error_type=error.error_type,
        error_message=error.message,
        raw=None,
    )
    record.update(request.keep)
    return record
