"""Rate-limit headers -> what the provider says its limits are, and how much is left.

OpenAI style (also vLLM gateways, OpenRouter, most relays):
    x-ratelimit-limit-requests: 1200            per minute
    x-ratelimit-remaining-requests: 1150
    x-ratelimit-reset-requests: 6m0s            Go-style durations: 1h2m3s, 1.5s, 20ms
    ... and the same three for -tokens
Anthropic style:
    anthropic-ratelimit-requests-limit / -remaining / -reset (RFC 3339 time)
    ... and -tokens-*, -input-tokens-*, -output-tokens-*
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6,
                 "ns": 1e-9}


@dataclass(frozen=True, slots=True)
class Quota:
    """One limited resource: its per-minute limit, what is left, seconds until it resets."""

    limit: float | None = None
    remaining: float | None = None
    reset_s: float | None = None


@dataclass(frozen=True, slots=True)
class RateInfo:
    """Everything a response's headers said about the provider's limits."""

    requests: Quota = Quota()
    tokens: Quota = Quota()
    input_tokens: Quota = Quota()
    output_tokens: Quota = Quota()

    @property
    def empty(self) -> bool:
        """True when the response carried no rate-limit headers at all."""
        return self == _EMPTY


_EMPTY = RateInfo()


def parse_duration(text: str) -> float | None:
    """Seconds in a Go-style duration ("6m0s", "1.5s", "20ms") or a bare number of seconds."""
    text = text.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _reset_at(value: str | None, now: float) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() - now)
    except ValueError:
        return parse_duration(value)


def parse_rate_headers(headers: Mapping[str, str], *, now: float) -> RateInfo:
    """The limits stated by one response's headers; `now` is the wall-clock time (epoch s)."""
    if headers.get("x-ratelimit-limit-requests") is not None or headers.get(
        "x-ratelimit-limit-tokens"
    ) is not None:
        return RateInfo(
            requests=_openai_quota(headers, "requests"), tokens=_openai_quota(headers, "tokens")
        )
    if (
        headers.get("anthropic-ratelimit-requests-limit") is not None
        or headers.get("anthropic-ratelimit-tokens-limit") is not None
        or headers.get("anthropic-ratelimit-input-tokens-limit") is not None
    ):
        return RateInfo(
            requests=_anthropic_quota(headers, "requests", now),
            tokens=_anthropic_quota(headers, "tokens", now),
            input_tokens=_anthropic_quota(headers, "input-tokens", now),
            output_tokens=_anthropic_quota(headers, "output-tokens", now),
        )
    return _EMPTY


def _openai_quota(headers: Mapping[str, str], kind: str) -> Quota:
    reset = headers.get(f"x-ratelimit-reset-{kind}")
    return Quota(
        limit=_number(headers.get(f"x-ratelimit-limit-{kind}")),
        remaining=_number(headers.get(f"x-ratelimit-remaining-{kind}")),
        reset_s=parse_duration(reset) if reset is not None else None,
    )


def _anthropic_quota(headers: Mapping[str, str], kind: str, now: float) -> Quota:
    prefix = f"anthropic-ratelimit-{kind}"
    return Quota(
        limit=_number(headers.get(f"{prefix}-limit")),
        remaining=_number(headers.get(f"{prefix}-remaining")),
        reset_s=_reset_at(headers.get(f"{prefix}-reset"), now),
    )


NEAR_ZERO = 0.01  # of the limit: "remaining" this low is a spent quota
PLENTY = 0.1  # of the limit: this much left is a quota that is not what refused us


def quota_state(info: RateInfo) -> str | None:
    """"spent" if a stated quota is at or near zero, "plenty" if every one has a tenth left.

    None when no quota is stated with both a limit and a remaining count, or in between.
    """
    seen = [(q.limit, q.remaining) for q in (info.requests, info.tokens, info.input_tokens,
                                             info.output_tokens)
            if q.limit and q.remaining is not None]
    if not seen:
        return None
    if any(left <= max(1.0, NEAR_ZERO * limit) for limit, left in seen):
        return "spent"
    if all(left >= PLENTY * limit for limit, left in seen):
        return "plenty"
    return None
