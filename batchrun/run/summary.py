"""What a run did, as the CLI prints it and the Python API returns it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class RunSummary:
    """What a run did; `exit_code` follows the CLI's contract."""

    name: str
    output: Path
    total: int
    ok: int
    error: int
    skipped: int
    pending: int
    tokens: dict[str, int]
    cost_usd: float | None
    elapsed_s: float
    stopped: str | None  # "budget" | "interrupted" | None

    @property
    def exit_code(self) -> int:
        """0 all ok, 1 some errors, 3 stopped by the budget, 130 interrupted."""
        if self.stopped == "interrupted":
            return 130
        if self.stopped == "budget":
            return 3
        return 1 if self.error else 0
