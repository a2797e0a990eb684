"""What a run did, as the CLI prints it and the Python API returns it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchrun.engine.account import Stop
from batchrun.errors import (
    EXIT_ACCOUNT,
    EXIT_BUDGET,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SOME_ERRORS,
)


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
    refused: tuple[Stop, ...] = ()  # providers that refused the account (some maybe stopped)
    refused_requests: int = 0  # requests a refusal left pending
    unsettled: int = 0  # requests left pending with no reason (no stop, not in a live batch)

    @property
    def exit_code(self) -> int:
        """0 all ok, 1 some not ok, 3 budget, 5 an account refused, 130 interrupted."""
        if self.stopped == "interrupted":
            return EXIT_INTERRUPTED
        if any(stop.stopped for stop in self.refused):
            return EXIT_ACCOUNT
        if self.stopped == "budget":
            return EXIT_BUDGET
        return EXIT_SOME_ERRORS if self.error or self.refused_requests or self.unsettled \
            else EXIT_OK

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form, as a shard process hands its summary to its parent."""
        data = dataclasses.asdict(self)
        data["output"] = str(self.output)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSummary:
        """The inverse of `to_dict`."""
        fields = dict(data)
        fields["output"] = Path(fields["output"])
        fields["refused"] = tuple(Stop(**stop) for stop in fields.get("refused", ()))
        return cls(**fields)

    def account_lines(self) -> list[str]:
        """What to say about refused accounts: who refused, what they said, what to do."""
        lines = []
        for stop in self.refused:
            what = "sending to it stopped, its rows" if stop.stopped else "the refused requests"
            lines.append(f"{stop.provider} refused the account ({stop.error_type}): "
                         f"{stop.message}; {what} are left pending: {stop.advice}")
        return lines
