"""What the mock provider is told (MockConfig) and what it counts (MockStats)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from batchrun.errors import UsageError
from batchrun.mock.shapes import SHAPE_TABLE, SHAPES

LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
REASONING_MODES = ("none", "field", "think")


@dataclass(frozen=True, slots=True)
class MockConfig:
    """How the mock behaves; limits are per minute, enforced per window of `window_s`."""

    host: str = "127.0.0.1"
    port: int = 0
    latency_ms: float = 0.0
    rpm: float | None = None
    tpm: float | None = None
    window_s: float = 60.0
    fail_rate: float = 0.0
    seed: int = 0
    shape: str = "openai"
    reasoning: str = "none"
    rate_headers: bool = True
    api_key: str | None = None
    slow_ms: float = 1000.0  # extra delay of a "slow" injected failure

    def __post_init__(self) -> None:
        if self.host not in LOOPBACK:
            raise UsageError(f"the mock binds to loopback only (127.0.0.1, ::1), not {self.host!r}")
        if self.shape not in SHAPE_TABLE:
            raise UsageError(f"unknown mock shape {self.shape!r}: one of {', '.join(SHAPES)}")
        if self.reasoning not in REASONING_MODES:
            raise UsageError(f"mock reasoning must be one of {', '.join(REASONING_MODES)}")
        if not 0.0 <= self.fail_rate <= 1.0:
            raise UsageError(f"fail_rate must be between 0 and 1, not {self.fail_rate}")
        if self.window_s <= 0 or any(v is not None and v <= 0 for v in (self.rpm, self.tpm)):
            raise UsageError("rpm, tpm and window_s must be positive")


@dataclass(slots=True)
class MockStats:
    """What the mock has seen; `answered` and `attempts` are keyed by `request_key(body)`."""

    requests: int = 0
    ok: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    rate_limited: int = 0  # refused by the enforced limits; injected 429s are in `injected`
    answered: dict[str, int] = field(default_factory=dict)
    tokens: int = 0
    attempts: dict[str, int] = field(default_factory=dict)
    injected: dict[str, int] = field(default_factory=dict)

    def answered_twice(self) -> int:
        """How many request keys were answered 200 more than once."""
        return sum(1 for n in self.answered.values() if n > 1)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able copy."""
        return {
            "requests": self.requests,
            "ok": self.ok,
            "by_status": {str(k): v for k, v in self.by_status.items()},
            "rate_limited": self.rate_limited,
            "answered": dict(self.answered),
            "answered_twice": self.answered_twice(),
            "tokens": self.tokens,
            "attempts": dict(self.attempts),
            "injected": dict(self.injected),
        }
