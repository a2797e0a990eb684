"""The mock provider's rate limits: fixed windows, and the headers that describe them.

Limits are stated per minute, as providers publish them, but enforced per window of `window_s`
seconds: at most rpm * window_s / 60 requests are admitted and, once the tokens answered in a
window reach tpm * window_s / 60, later arrivals are refused until the window ends. This is how
real providers behave (a 1,200/min limit checked as 200 per 10 s), so a client that spends a
minute's quota in one burst gets 429s.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request was refused and how long until the window ends."""

    limit: str  # "requests" | "tokens"
    wait_s: float

    @property
    def headers(self) -> dict[str, str]:
        """Retry-After (whole seconds, rounded up) and retry-after-ms."""
        return {
            "retry-after": str(math.ceil(self.wait_s)),
            "retry-after-ms": str(math.ceil(self.wait_s * 1000)),
        }


def go_duration(seconds: float) -> str:
    """A duration in OpenAI's header style: "6m0s", "1.5s", "20ms"."""
    if seconds < 1:
        ms = math.ceil(seconds * 1000)
        return f"{ms}ms" if ms > 0 else "0s"
    hours, rest = divmod(round(seconds, 3), 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{secs:.3f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{int(hours)}h{int(minutes)}m{text}"
    return f"{int(minutes)}m{text}" if minutes else text


def rfc3339(epoch_s: float) -> str:
    """A UTC timestamp in whole seconds, rounded up, as Anthropic's reset headers give it."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(math.ceil(epoch_s)))


def _per_minute(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:g}"


class FixedWindow:
    """Request and token caps per fixed window; `clock` is injectable for tests."""

    __slots__ = ("_clock", "_end", "_start", "requests", "rpm", "tokens", "tpm", "window_s")

    def __init__(
        self,
        rpm: float | None,
        tpm: float | None,
        window_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rpm = rpm
        self.tpm = tpm
        self.window_s = window_s
        self._clock = clock
        self._start = clock()
        self._end = self._start + window_s
        self.requests = 0
        self.tokens = 0

    def _roll(self) -> float:
        now = self._clock()
        if now >= self._end:
            passed = (now - self._start) // self.window_s
            self._start += passed * self.window_s
            self._end = self._start + self.window_s
            self.requests = 0
            self.tokens = 0
        return now

    @property
    def request_cap(self) -> int | None:
        """Requests admitted per window (at least 1)."""
        if self.rpm is None:
            return None
        return max(1, int(self.rpm * self.window_s / 60))

    @property
    def token_cap(self) -> float | None:
        """Tokens answered per window before arrivals are refused."""
        return None if self.tpm is None else self.tpm * self.window_s / 60

    def admit(self) -> Refusal | None:
        """Count one arriving request, or say why it is refused."""
        now = self._roll()
        cap = self.request_cap
        if cap is not None and self.requests >= cap:
            return Refusal("requests", self._end - now)
        tokens = self.token_cap
        if tokens is not None and self.tokens >= tokens:
            return Refusal("tokens", self._end - now)
        self.requests += 1
        return None

    def spend(self, tokens: int) -> None:
        """Count the tokens of an answered request in the current window."""
        self._roll()
        self.tokens += tokens

    def set_limits(self, rpm: float | None, tpm: float | None) -> None:
        """New limits, in force at once; what the window has used so far still counts."""
        self.rpm = rpm
        self.tpm = tpm

    def clear(self) -> None:
        """Start a fresh window now."""
        self._start = self._clock()
        self._end = self._start + self.window_s
        self.requests = 0
        self.tokens = 0

    def _remaining(self, cap: float, used: float) -> int:
        # Scaled to a minute, so remaining / limit is the share of this window still free.
        return max(0, int((cap - used) * 60 / self.window_s))

    def openai_headers(self) -> dict[str, str]:
        """x-ratelimit-* headers, limits per minute, resets in OpenAI's duration style."""
        now = self._roll()
        headers: dict[str, str] = {}
        reset = go_duration(self._end - now)
        if self.rpm is not None:
            headers["x-ratelimit-limit-requests"] = _per_minute(self.rpm)
            headers["x-ratelimit-remaining-requests"] = str(
                self._remaining(self.request_cap or 0, self.requests)
            )
            headers["x-ratelimit-reset-requests"] = reset
        if self.tpm is not None:
            headers["x-ratelimit-limit-tokens"] = _per_minute(self.tpm)
            headers["x-ratelimit-remaining-tokens"] = str(
                self._remaining(self.token_cap or 0.0, self.tokens)
            )
            headers["x-ratelimit-reset-tokens"] = reset
        return headers

    def anthropic_headers(self) -> dict[str, str]:
        """anthropic-ratelimit-* headers, limits per minute, resets as RFC 3339 timestamps."""
        now = self._roll()
        headers: dict[str, str] = {}
        reset = rfc3339(time.time() + self._end - now)
        if self.rpm is not None:
            headers["anthropic-ratelimit-requests-limit"] = _per_minute(self.rpm)
            headers["anthropic-ratelimit-requests-remaining"] = str(
                self._remaining(self.request_cap or 0, self.requests)
            )
            headers["anthropic-ratelimit-requests-reset"] = reset
        if self.tpm is not None:
            headers["anthropic-ratelimit-tokens-limit"] = _per_minute(self.tpm)
            headers["anthropic-ratelimit-tokens-remaining"] = str(
                self._remaining(self.token_cap or 0.0, self.tokens)
            )
            headers["anthropic-ratelimit-tokens-reset"] = reset
        return headers
