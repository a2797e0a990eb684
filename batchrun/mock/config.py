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
    # Batch APIs (`mock.batches`): how long a batch takes from creation to its end, and the
    # share of that time an OpenAI batch spends finalizing, its request_counts already complete.
    batch_seconds: float = 0.5
    batch_finalizing_share: float = 0.1
    batch_expire_share: float = 0.0  # > 0: this share of each batch's lines expires unanswered
    batch_500_share: float = 0.0  # share of batch lines that end in a 500 error
    batch_429_share: float = 0.0  # share of batch lines that end in a 429 error
    batch_no_output_file: bool = False  # OpenAI batches complete with output_file_id null
    batch_shuffle_results: bool = False  # result lines in a random order, not the input's
    batch_validation_failures: int = 0  # the first N batches of each API fail as a whole
    file_visible_after_ms: float = 0.0  # an uploaded file 404s for this long (OpenAI)

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
        self._check_batch_fields()

    def _check_batch_fields(self) -> None:
        if self.batch_seconds <= 0:
            raise UsageError(f"batch_seconds must be positive, not {self.batch_seconds}")
        if not 0.0 <= self.batch_finalizing_share <= 0.8:
            raise UsageError("batch_finalizing_share must be between 0 and 0.8 (validating "
                             "takes a tenth of batch_seconds, processing needs the rest)")
        shares = (self.batch_expire_share, self.batch_500_share, self.batch_429_share)
        if not all(0.0 <= share <= 1.0 for share in shares):
            raise UsageError("batch_expire_share, batch_500_share and batch_429_share must be "
                             "between 0 and 1")
        if self.batch_500_share + self.batch_429_share > 1.0:
            raise UsageError("batch_500_share and batch_429_share add up to more than 1")
        if self.batch_validation_failures < 0 or self.file_visible_after_ms < 0:
            raise UsageError("batch_validation_failures and file_visible_after_ms must not be "
                             "negative")


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
class BatchTally:
    """One batch's counters: its API, its lines, how many were billed, its final status."""

    api: str
    lines: int
    billed: int = 0
    status: str = ""  # "" while live; then completed, failed, expired, cancelled or ended

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able copy."""
        return {"api": self.api, "lines": self.lines, "billed": self.billed,
                "status": self.status}


@dataclass(slots=True)
class MockStats:
    """What the mock has seen; `answered` and `attempts` are keyed by `request_key(body)`.

    Batch lines count their attempts in `attempts` too (so `[[mock:fail=500x1]]` fails a line's
    first batch and not its resubmission), but their answers go to the `batch_*` counters only.
    """

    requests: int = 0
    ok: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    rate_limited: int = 0  # refused by the enforced limits; injected 429s are in `injected`
    answered: dict[str, int] = field(default_factory=dict)
    tokens: int = 0
    attempts: dict[str, int] = field(default_factory=dict)
    injected: dict[str, int] = field(default_factory=dict)
    batch_calls: dict[str, int] = field(default_factory=dict)  # per route, "batches.retrieve"
    batches_created: int = 0
    batches_ended: dict[str, int] = field(default_factory=dict)  # per final status
    batch_jobs: dict[str, BatchTally] = field(default_factory=dict)  # per batch id
    batch_lines: int = 0  # lines accepted into batches
    batch_lines_billed: int = 0  # lines answered successfully before their batch ended
    batch_tokens: int = 0  # prompt + completion tokens of the billed lines
    batch_billed: dict[str, int] = field(default_factory=dict)  # per custom_id
    batch_answered: dict[str, int] = field(default_factory=dict)  # per request key
    batch_live: dict[str, int] = field(default_factory=dict)  # per custom_id: live batches now
    batch_live_max: dict[str, int] = field(default_factory=dict)  # the same, highest ever

    def answered_twice(self) -> int:
        """How many request keys were answered 200 more than once."""
        return sum(1 for n in self.answered.values() if n > 1)

    def batch_overlaps(self) -> int:
        """How many custom_ids ever sat in two live (not yet ended) batches at once."""
        return sum(1 for n in self.batch_live_max.values() if n > 1)

    def billed_twice(self) -> int:
        """How many custom_ids were billed in more than one batch."""
        return sum(1 for n in self.batch_billed.values() if n > 1)

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
            "batch_calls": dict(self.batch_calls),
            "batches_created": self.batches_created,
            "batches_ended": dict(self.batches_ended),
            "batch_jobs": {k: v.to_dict() for k, v in self.batch_jobs.items()},
            "batch_lines": self.batch_lines,
            "batch_lines_billed": self.batch_lines_billed,
            "batch_tokens": self.batch_tokens,
            "batch_billed": dict(self.batch_billed),
            "batch_answered": dict(self.batch_answered),
            "batch_live": dict(self.batch_live),
            "batch_live_max": dict(self.batch_live_max),
            "batch_overlaps": self.batch_overlaps(),
            "billed_twice": self.billed_twice(),
        }
