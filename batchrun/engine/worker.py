"""One request's journey: limits -> retry(send) -> check -> result record."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tenacity import AsyncRetrying

from batchrun.engine.record import ResultRecord, error_record, ok_record
from batchrun.errors import AccountRefused, RateLimited, RequestError, RetryableError
from batchrun.parse.usage import sum_usage

if TYPE_CHECKING:
    from batchrun.engine.lanes import Lane
    from batchrun.engine.tally import Tally
    from batchrun.parse import AnswerChecker, Structured, Usage
    from batchrun.providers.http import Reply
    from batchrun.sources import Request


@dataclass(frozen=True, slots=True)
class Settings:
    """What every worker shares."""

    retry: AsyncRetrying
    checker: AnswerChecker | None
    backoff_initial_s: float


class Stopped(Exception):
    """The run is stopping: this request is left unsent and unrecorded (pending)."""


async def process(
    request: Request, lane: Lane, settings: Settings, tally: Tally, stop: Callable[[], bool]
) -> ResultRecord:
    """Send one request with its retries and return its result record (ok or error)."""
    attempt = _Attempt(request, lane, settings, tally, stop)
    try:
        try:
            # Most requests succeed at once: the retry machinery is only built when one fails.
            await attempt()
        except RetryableError as first_failure:
            await _retry(attempt, first_failure, settings.retry)
    except AccountRefused:
        raise  # the account's fault, not this request's: it stays pending, the lane may stop
    except RequestError as error:
        return error_record(request, error, attempt.count, attempt.reply, attempt.usage())
    assert attempt.reply is not None
    usage = attempt.usage() or attempt.reply.answer.usage
    return ok_record(request, attempt.reply, attempt.count, attempt.structured, usage)


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
    """One attempt at a request: limits, send, check; remembers what was paid for."""

    __slots__ = ("count", "lane", "paid", "reply", "request", "settings", "stop", "structured",
                 "tally")

    def __init__(
        self, request: Request, lane: Lane, settings: Settings, tally: Tally,
        stop: Callable[[], bool],
    ) -> None:
        self.request = request
        self.lane = lane
        self.settings = settings
        self.tally = tally
        self.stop = stop
        self.count = 0
        self.reply: Reply | None = None
        self.structured: Structured | None = None
        self.paid: list[Usage] = []

    def usage(self) -> Usage | None:
        """Usage summed over every answer received (answers rejected by [parse] cost too)."""
        return sum_usage(self.paid) if self.paid else None

    async def __call__(self) -> None:
        if self.stop():
            raise Stopped
        self.count += 1
        if self.count > 1:
            self.tally.retries += 1
        request, limiter = self.request, self.lane.limiter
        ticket = await limiter.acquire(request.prompt_tokens_est, request.completion_reservation)
        if self.stop():  # stopped while waiting for capacity: send nothing more
            limiter.release(ticket)
            raise Stopped
        try:
            reply = await self.lane.client.send(request.body)
        except RetryableError as error:
            limiter.release(ticket)
            if isinstance(error, RateLimited):
                self.tally.rate_limited += 1
            # The limiter weighs every failure: most are noise and cost only this request's
            # own wait (the retry policy's); a limit or an outage pauses the whole provider.
            limiter.on_error(error, self.settings.backoff_initial_s, ticket)
            raise
        except BaseException:
            limiter.release(ticket)
            raise
        self.reply = reply
        usage = reply.answer.usage
        self.paid.append(usage)
        limiter.release(ticket, answered=True, prompt=usage.prompt_tokens,
                        completion=usage.completion_tokens)
        # A refusal is the model's answer, not a malformed one: never parsed into a label,
        # never asked again.
        if self.settings.checker is not None and reply.answer.refusal is None:
            self.structured = self.settings.checker.check(reply.answer.content)
