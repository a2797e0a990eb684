"""Running totals of a run, and the budget that stops it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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

    def settle(self, worst: float, actual: float) -> None:
        """Replace a reservation by what the request really cost."""
        if self.max_usd is None:
            return
        self.in_flight -= worst
        self.spent += actual
