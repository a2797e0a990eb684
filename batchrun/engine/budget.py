"""`[budget] max_usd`: what was spent plus the worst case of what is in flight, never past it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from batchrun.engine.record import ResultRecord


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

    def hold(self, worst: float) -> None:
        """Count `worst` USD as in flight, refused or not: a batch already at the provider."""
        if self.max_usd is not None:
            self.in_flight += worst

    def settle(self, worst: float, actual: float) -> None:
        """Replace a reservation by what the request really cost."""
        if self.max_usd is None:
            return
        self.in_flight -= worst
        self.spent += actual

    def spent_on(self, record: ResultRecord, worst: float) -> float:
        """What a finished request cost: 0 unless an answer was paid for."""
        if record.cost_usd is not None:
            return record.cost_usd
        return worst if record.answered else 0.0  # an answer without usage: assume the worst
