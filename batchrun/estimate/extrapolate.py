"""Sampled per-row results -> totals over every row, each with its 95% interval.

Rows are the sampling unit (a row's samples share one prompt): a total is rows x mean(per-row sum)
+- t(0.975, n-1) x s / sqrt(n), finite-population corrected, so a sample of every row is exact.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from batchrun.sources import Request

# Two-sided 95% Student t quantiles for 1..30 degrees of freedom; a series beyond.
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
        2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
        2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


@dataclass(frozen=True, slots=True)
class Interval:
    """An extrapolated total and its 95% interval; low/high None when one row cannot give one."""

    value: float
    low: float | None
    high: float | None


@dataclass(frozen=True, slots=True)
class Extrapolated:
    """What the sampled requests of one variant (or of all, "total") say about every row."""

    name: str
    answered: int
    errors: int
    prompt_tokens: Interval | None  # None: no row answered in full
    completion_tokens: Interval | None
    cost_usd: Interval | None  # None also when unpriced
    prompt_ratio: float | None  # reported / estimated prompt tokens, over the sampled answers


@dataclass(slots=True)
class SampledVariant:
    """Per-row sums of the sampled results of one variant (rows are the sampling unit)."""

    samples: int
    priced: bool
    rows: dict[str, list[float]] = field(default_factory=dict)  # id -> [prompt, compl, cost, n]
    estimated: int = 0
    reported: int = 0
    errors: int = 0

    def add(self, request: Request, record: dict[str, Any] | None) -> None:
        """Count one planned request with its result record (None: it was never sent)."""
        sums = self.rows.setdefault(request.row_id, [0.0, 0.0, 0.0, 0])
        if record is None:  # not sent: the budget or an interrupt stopped the sample
            return
        sums[0] += record["prompt_tokens"] or 0
        sums[1] += record["completion_tokens"] or 0
        sums[2] += record["cost_usd"] or 0.0
        sums[3] += 1
        if record["status"] != "ok":
            self.errors += 1
        elif record["prompt_tokens"] is not None:
            self.estimated += request.prompt_tokens_est
            self.reported += record["prompt_tokens"]

    def complete(self, row_id: str) -> bool:
        """Whether every sample of row `row_id` was answered."""
        return row_id in self.rows and self.rows[row_id][3] == self.samples


def extrapolate(
    name: str, parts: list[SampledVariant], ids: list[str], population: int
) -> Extrapolated:
    """One variant's figures (one part), or the total's (every part), over the rows every part
    answered in full."""
    full = [i for i in ids if all(part.complete(i) for part in parts)]

    def total(column: int, only_priced: bool = False) -> Interval | None:
        chosen = [p for p in parts if p.priced or not only_priced]
        if not chosen or not full:
            return None
        return _total([sum(p.rows[i][column] for p in chosen) for i in full], population)

    estimated = sum(p.estimated for p in parts)
    return Extrapolated(
        name, answered=int(sum(v[3] for p in parts for v in p.rows.values())),
        errors=sum(p.errors for p in parts), prompt_tokens=total(0), completion_tokens=total(1),
        cost_usd=total(2, only_priced=True),
        prompt_ratio=sum(p.reported for p in parts) / estimated if estimated else None,
    )


def _total(per_row: list[float], population: int) -> Interval:
    """population x mean(per_row), with its 95% interval (finite-population corrected)."""
    n = len(per_row)
    total = population * math.fsum(per_row) / n
    if n >= population:
        return Interval(total, total, total)
    if n < 2:
        return Interval(total, None, None)
    fpc = math.sqrt((population - n) / (population - 1))
    half = t95(n - 1) * statistics.stdev(per_row) / math.sqrt(n) * population * fpc
    return Interval(total, max(0.0, total - half), total + half)


def t95(df: int) -> float:
    """The 0.975 quantile of Student's t with `df` degrees of freedom."""
    if df <= len(_T95):
        return _T95[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
