"""What the mock provider is told (MockConfig) and what it counts (MockStats)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from batchrun.errors import UsageError
from batchrun.mock.answer import FAULT_KINDS
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
    # A mix of injected failures, each kind with its share of attempts, drawn independently of
    # any limit: (("429", 0.05), ("500", 0.05), ("drop", 0.02), ("hang", 0.01)). See
    # `parse_fault_mix` for the command line's "429=0.05,500=0.05,drop=0.02,hang=0.01".
    faults: tuple[tuple[str, float], ...] = ()
    retry_after_s: float | None = None  # Retry-After of injected 429s, 503s and 529s
    hang_s: float = 60.0  # how long a "hang" holds a request before answering

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
        for kind, share in self.faults:
            if not _fault_kind(kind) or not 0.0 <= share <= 1.0:
                raise UsageError(f"mock fault {kind}={share}: a kind ({', '.join(FAULTS)} or an "
                                 "HTTP status) and a share between 0 and 1")
        if sum(share for _, share in self.faults) > 1.0:
            raise UsageError("the shares of the mock's faults add up to more than 1")
        if (self.retry_after_s is not None and self.retry_after_s < 0) or self.hang_s < 0:
            raise UsageError("retry_after_s and hang_s must not be negative")


FAULTS = tuple(sorted(FAULT_KINDS))


def _fault_kind(kind: str) -> bool:
    return kind in FAULT_KINDS or (kind.isdigit() and 400 <= int(kind) <= 599)


def parse_fault_mix(text: str) -> tuple[tuple[str, float], ...]:
    """"429=0.05,500=0.05,drop=0.02,hang=0.01" -> (("429", 0.05), ...); UsageError if bad."""
    mix = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        kind, sep, share = part.partition("=")
        try:
            mix.append((kind.strip(), float(share)))
        except ValueError:
            sep = ""
        if not sep:
            raise UsageError(f"mock fault {part!r}: write KIND=SHARE, as in 429=0.05")
    return tuple(mix)


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
