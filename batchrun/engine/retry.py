"""The `[retry]` table as a tenacity policy: retry by exception class, honour Retry-After.

The waits are per request: a sporadic 429 or 5xx delays only its own request. Whether the whole
provider should slow down is the limiter's call (`limits.controller`), not the retry policy's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)
from tenacity.wait import wait_base

from batchrun.errors import RequestError, RetryableError, Timeout

if TYPE_CHECKING:
    from batchrun.job import RetrySpec


class wait_retry_after(wait_base):
    """Wait what the server asked for (capped), else fall back to another strategy."""

    def __init__(self, fallback: wait_base, cap: float) -> None:
        self.fallback = fallback
        self.cap = cap

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        if isinstance(error, RequestError) and error.retry_after is not None:
            return min(max(error.retry_after, 0.0), self.cap)
        return float(self.fallback(retry_state))


class wait_after_timeout(wait_base):
    """After a timeout, a short random wait instead of `fallback`: the attempt already waited.

    A timed-out attempt has spent the whole timeout (often tens of seconds) before failing, so
    it was spaced from the next one far more than any backoff would; adding the exponential
    backoff on top only lengthens the tail of a run behind a hung request.
    """

    def __init__(self, fallback: wait_base, jitter_s: float) -> None:
        self.fallback = fallback
        self.jitter = wait_random(0, jitter_s)

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        if outcome is not None and isinstance(outcome.exception(), Timeout):
            return float(self.jitter(retry_state))
        return float(self.fallback(retry_state))


def retry_policy(
    spec: RetrySpec,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    before_sleep: Callable[[RetryCallState], Any] | None = None,
) -> AsyncRetrying:
    """A policy to `.copy()` per request: it keeps per-run state and is not shareable."""
    backoff = wait_exponential(
        multiplier=spec.backoff_initial_s, max=spec.backoff_max_s
    ) + wait_random(0, spec.backoff_initial_s)
    return AsyncRetrying(
        stop=stop_after_attempt(spec.max_attempts),
        wait=wait_retry_after(wait_after_timeout(backoff, spec.backoff_initial_s),
                              spec.retry_after_max_s),
        retry=retry_if_exception_type(RetryableError),
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
