"""Running totals of a run, for the progress line, the summary and the exit code."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from batchrun.engine.record import ResultRecord


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

    def add(self, record: ResultRecord) -> None:
        """Count one result record."""
        if record.ok:
            self.ok += 1
        else:
            self.error += 1
            kind = record.error_type or "error"
            self.errors_by_type[kind] = self.errors_by_type.get(kind, 0) + 1
        self.prompt_tokens += record.prompt_tokens or 0
        self.completion_tokens += record.completion_tokens or 0
        self.reasoning_tokens += record.reasoning_tokens or 0
        self.cached_tokens += record.cached_tokens or 0
        self.total_tokens += record.total_tokens or 0
        if record.cost_usd is not None:
            self.cost_usd += record.cost_usd
            self.priced_rows += 1

    def tokens(self) -> dict[str, int]:
        """Tokens by kind, as the summary shows them."""
        return {"prompt": self.prompt_tokens, "completion": self.completion_tokens,
                "reasoning": self.reasoning_tokens, "cached": self.cached_tokens,
                "total": self.total_tokens}
